/* tap — the smallest test harness that can fail: TAP lines on stdout, exit 1 on any
 * failure. test/run sums the "ok"/"not ok" lines of every binary. */
#ifndef VOUCH_TAP_H
#define VOUCH_TAP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

#define ok(cond, ...)                                                                              \
	do {                                                                                       \
		int ok_c_ = !!(cond);                                                              \
		tap_n++;                                                                           \
		if (!ok_c_)                                                                        \
			tap_failed++;                                                              \
		printf("%s %d - ", ok_c_ ? "ok" : "not ok", tap_n);                                \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		if (!ok_c_)                                                                        \
			printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
		fflush(stdout);                                                                    \
	} while (0)

/* A skip is printed with its reason; under VOUCH_REQUIRE_PRIV=1 (.ci/run) it fails. */
#define skip(...)                                                                                  \
	do {                                                                                       \
		tap_n++;                                                                           \
		const char *req_ = getenv("VOUCH_REQUIRE_PRIV");                                   \
		if (req_ && strcmp(req_, "1") == 0) {                                              \
			tap_failed++;                                                              \
			printf("not ok %d - skip not allowed (VOUCH_REQUIRE_PRIV=1): ", tap_n);    \
		} else {                                                                           \
			printf("ok %d - # SKIP ", tap_n);                                          \
		}                                                                                  \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
	} while (0)

static inline int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
