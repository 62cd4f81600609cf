/* Unit tests for src/registry/revoke. */
#include "registry/revoke.h"
#include "tap.h"

#include <errno.h>

int main(void)
{
	struct revocations *r = revocations_new();
	char why[64];

	ok(r != NULL, "table allocates");
	ok(!revocations_check(r, "demo/a", why, sizeof(why)), "nothing is revoked at first");
	ok(revocations_add(r, "demo/a", "operator said so") == 0, "revoke demo/a");
	ok(revocations_check(r, "demo/a", why, sizeof(why)) && strcmp(why, "operator said so") == 0,
	   "demo/a is revoked with its reason");
	ok(!revocations_check(r, "demo/ab", NULL, 0) && !revocations_check(r, "demo", NULL, 0),
	   "exact match only: no prefix or extension matches");
	ok(revocations_add(r, "demo/a", "again") == 0 && revocations_check(r, "demo/a", why, sizeof(why)) &&
	       strcmp(why, "operator said so") == 0,
	   "revoking twice keeps the first reason");
	revocations_check(r, "demo/a", why, 4);
	ok(strlen(why) == 3, "reason copy is bounded");
	ok(revocations_remove(r, "demo/a") == 0 && !revocations_check(r, "demo/a", NULL, 0),
	   "lifting a revocation");
	ok(revocations_remove(r, "demo/a") == -ENOENT, "lifting twice reports -ENOENT");
	int full = 0;
	char p[32];
	for (int i = 0; i < REVOKE_MAX + 5; i++) {
		snprintf(p, sizeof(p), "w/%d", i);
		if (revocations_add(r, p, NULL) == -E2BIG)
			full++;
	}
	ok(full == 5, "the table is bounded at REVOKE_MAX");
	ok(revocations_check(r, "w/0", why, sizeof(why)) && strcmp(why, "revoked") == 0,
	   "default reason");
	ok(!revocations_check(NULL, "w/0", NULL, 0), "NULL table revokes nothing");
	revocations_free(r);
	revocations_free(NULL);
	return tap_done();
}
