/* report — the summary of a static-key scan that `vouch scan --report` hands to vouchd
 * (admin {"cmd":"scan-report"}), so that `vouch status` and the dashboard show the trust
 * debt (docs/SCAN.md "Reporting to vouchd"). It carries what the scan printed — kinds,
 * public prefixes, fingerprints and places — never a secret.
 *
 * A report is untrusted input twice: on the admin socket, and again when vouchd reads its
 * saved copy back from the state directory. scan_report_check accepts only the fields
 * below, each type-, length- and character-checked, and returns a canonical copy:
 *   {"total":N, "places":N, "processes":N, "files":N, "truncated":B,
 *    "findings":[{"kind":K, "prefix":P, "fingerprint":F, "source":"file"|"process",
 *                 "where":W, "workload":S|null}, ...]}
 * K: 1..48 of [a-z0-9-]; P: 0..31 of [A-Za-z0-9_-]; F: "sha256:" and 12 lowercase hex
 * digits; W: 1..SCAN_REPORT_WHERE_MAX bytes, S: 1..SCAN_REPORT_NAME_MAX bytes, both
 * without C0, DEL or C1 controls (jansson has already refused invalid UTF-8). At most
 * SCAN_REPORT_MAX_FINDINGS findings; when the report is not truncated, places is their
 * number and total the number of distinct fingerprints among them. */
#ifndef VOUCH_SCAN_REPORT_H
#define VOUCH_SCAN_REPORT_H

#include <jansson.h>
#include <stddef.h>

#define SCAN_REPORT_MAX_FINDINGS 256
#define SCAN_REPORT_WHERE_MAX 1024
#define SCAN_REPORT_NAME_MAX 2400
#define SCAN_REPORT_COUNT_MAX 1000000000LL /* places, processes, files, total */

/* The canonical copy of the report in `in` (extra members, such as "cmd", are ignored),
 * or NULL with why (NUL-terminated) in err[cap]: not an object, a missing or bad field,
 * too many findings, inconsistent counts, or no memory. */
json_t *scan_report_check(json_t *in, char *err, size_t cap);

#endif
