/* fuzz_agentconf — config/agentconf.c over config/yamltree.c: vouchd.yaml.
 *
 * Input: one configuration file, handed to agentconf_load() as a memfd (the real entry
 * point, file checks included, no disk). Checks: -EINVAL comes with diagnostics and 0
 * without; a loaded configuration keeps its documented bounds (ports distinct and at most
 * AGENTCONF_MAX_PORTS, resolve interval 1..86400, every default string set). */
#include "fuzz.h"

#include "config/agentconf.h"

#include <errno.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct diag_list diags = {0};
	struct agentconf c;
	char path[64];
	int fd, r;

	fd = fuzz_memfile(data, size, path, sizeof(path));
	if (fd < 0)
		return 0;
	memset(&c, 0, sizeof(c));
	r = agentconf_load(path, &diags, &c);
	close(fd);
	if (r == 0) {
		FUZZ_CHECK(diags.n == 0);
		FUZZ_CHECK(c.trust_domain && c.issuer && c.state_dir && c.log_level);
		FUZZ_CHECK(c.intercept.n_ports <= AGENTCONF_MAX_PORTS);
		for (size_t i = 0; i < c.intercept.n_ports; i++)
			for (size_t j = i + 1; j < c.intercept.n_ports; j++)
				FUZZ_CHECK(c.intercept.ports[i] != c.intercept.ports[j]);
		FUZZ_CHECK(c.intercept.resolve_interval >= 1 &&
			   c.intercept.resolve_interval <= 86400);
		for (size_t i = 0; i < c.n_plain; i++)
			FUZZ_CHECK(c.plain[i].service && c.plain[i].listen);
	} else if (r == -EINVAL) {
		FUZZ_CHECK(diags.n > 0);
	}
	for (size_t i = 0; i < diags.n; i++)
		FUZZ_CHECK(diags.items[i].line >= 1 && diags.items[i].col >= 1);
	agentconf_done(&c);
	diag_list_done(&diags);
	return 0;
}
