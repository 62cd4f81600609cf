/* fuzz_resources — config/resources.c over config/yamltree.c (libyaml): resource YAML, which
 * anyone allowed to write the resources directory controls.
 *
 * Input: one resource file (multi-document YAML), handed to resources_load() as a memfd so
 * the real entry point runs, file reading included, without touching the disk. Checks:
 * success and failure are exclusive (a set and no diagnostics, or -EINVAL/-errno and at
 * least one), every diagnostic has a 1-based position and a message, and a loaded set is
 * queryable (every binding's service and source lookups, the built-in catalog). */
#include "fuzz.h"

#include "config/resources.h"

#include <errno.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diag_list diags = {0};
	struct resource_set *set = NULL;
	char path[64];
	const char *paths[1] = {path};
	int fd, r;

	if (size > RESOURCES_MAX_FILE + 1)
		return 0;
	fd = fuzz_memfile(data, size, path, sizeof(path));
	if (fd < 0)
		return 0;
	r = resources_load(paths, 1, &diags, &set);
	close(fd);
	if (r == 0) {
		FUZZ_CHECK(set != NULL && diags.n == 0);
		for (size_t i = 0; i < set->n_bindings; i++) {
			const struct res_binding *b = &set->bindings[i];

			/* references were checked: a binding's source exists */
			FUZZ_CHECK(resource_set_source(set, b->meta.ns, b->credential_source));
			for (size_t j = 0; j < set->n_services; j++)
				(void)resource_set_binding_for(set, b->workload_id,
							       &set->services[j]);
		}
		for (size_t i = 0; i < set->n_services; i++)
			FUZZ_CHECK(resource_set_service(set, set->services[i].meta.name) != NULL);
		resource_set_unref(set);
	} else {
		FUZZ_CHECK(set == NULL && r < 0);
		if (r == -EINVAL)
			FUZZ_CHECK(diags.n > 0);
	}
	for (size_t i = 0; i < diags.n; i++) {
		FUZZ_CHECK(diags.items[i].line >= 1 && diags.items[i].col >= 1);
		FUZZ_CHECK(diags.items[i].msg != NULL);
	}
	diag_list_done(&diags);
	return 0;
}
