/* sandbox — vouchd confines itself once the privileged part of setup is done (the
 * signer forked, the BPF programs loaded and attached) and before it starts a thread,
 * binds a listener or reads outside input (docs/SECURITY.md "Separated signing and
 * confinement"): it keeps only the capabilities attestation and token files need, sets
 * no_new_privs and installs a seccomp allowlist of the system calls the rest of setup
 * and the running agent make. Threads inherit all of it. */
#ifndef VOUCH_SANDBOX_H
#define VOUCH_SANDBOX_H

#include <stdbool.h>

struct agent;

/* VOUCH_SECCOMP=log in the environment: a system call outside the allowlists is logged
 * (kernel audit log, SCMP_ACT_LOG) instead of killing the process. For development and
 * the sanitizer build (LeakSanitizer ptraces at exit); never in production. */
bool sandbox_log_only(void);

/* Drop capabilities, set no_new_privs, load the filter. Call single-threaded (the
 * filter is loaded with SECCOMP_FILTER_FLAG_TSYNC all the same). Logs what it kept.
 * Returns 0 or -errno (vouchd then exits). */
int sandbox_enter(struct agent *a);

#endif
