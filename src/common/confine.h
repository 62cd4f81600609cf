/* confine — process confinement steps shared by vouchd and its signer (docs/SECURITY.md
 * "Separated signing and confinement"): capability sets and no_new_privs. The seccomp
 * allowlists themselves live with the code whose system calls they list (ca/signer.c,
 * agent/sandbox.c).
 *
 * Capabilities are per thread in Linux: call these before starting any thread (threads
 * inherit the caller's sets). */
#ifndef VOUCH_CONFINE_H
#define VOUCH_CONFINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reduce the permitted and effective sets to keep[0..n) (CAP_* numbers) intersected
 * with what we hold, clear the inheritable and ambient sets and drop every other
 * capability from the bounding set. Unprivileged (nothing to drop) is success.
 * Returns 0 or -errno. */
int confine_caps(const int *keep, size_t n);
/* prctl(PR_SET_NO_NEW_PRIVS): execve can never grant privileges again. 0 or -errno. */
int confine_no_new_privs(void);
/* The effective set of the calling thread, as a CapEff bit mask (for logs and tests). */
uint64_t confine_cap_eff(void);

#endif
