#include "attest/attest.h"

#include <string.h>

/* The selector keys attestation can evaluate (issue 2 §3). Kept in one table so resource
 * validation and matching agree on the vocabulary. */
static const char *const known_keys[] = {
	"process:uid",         "process:gid",   "process:name", "process:binary:path",
	"process:binary:sha256", "systemd:unit", "cgroup:path",  "container:id",
};

bool attest_known_selector(const char *key)
{
	for (size_t i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]); i++)
		if (strcmp(key, known_keys[i]) == 0)
			return true;
	return false;
}
