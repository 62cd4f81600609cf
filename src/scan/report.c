/* report — the static-key scan summary handed to vouchd (see report.h). */
#include "scan/report.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static json_t *bad(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static json_t *bad(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (err && cap) {
		va_start(ap, fmt);
		vsnprintf(err, cap, fmt, ap);
		va_end(ap);
	}
	return NULL;
}

static bool count_ok(json_t *o, const char *k, json_int_t *ret)
{
	json_t *v = json_object_get(o, k);

	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > SCAN_REPORT_COUNT_MAX)
		return false;
	*ret = json_integer_value(v);
	return true;
}

/* s of [min..max] bytes, each in the set: 'a' lowercase, 'A' any letter, '0' digits, and
 * the punctuation listed in extra. */
static bool charset_ok(const char *s, size_t len, size_t min, size_t max, const char *sets,
		       const char *extra)
{
	if (!s || len < min || len > max || strlen(s) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (strchr(sets, 'A') && c >= 'A' && c <= 'Z') ||
			  (strchr(sets, '0') && c >= '0' && c <= '9') || (c && strchr(extra, c));
		if (!ok)
			return false;
	}
	return true;
}

/* Text for a terminal or a page: no C0, DEL or C1 (U+0080..U+009F, "\xc2\x80".."\xc2\x9f"). */
static bool text_ok(json_t *v, size_t max)
{
	const unsigned char *s = (const unsigned char *)json_string_value(v);
	size_t len = json_string_length(v);

	if (!s || len == 0 || len > max || strlen((const char *)s) != len)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < 0x20 || s[i] == 0x7f)
			return false;
		if (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
			return false;
	}
	return true;
}

static bool fingerprint_ok(const char *s)
{
	if (!s || strlen(s) != 19 || strncmp(s, "sha256:", 7) != 0)
		return false;
	for (int i = 7; i < 19; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static json_t *finding(json_t *f, size_t i, char *err, size_t cap)
{
	json_t *kind = json_object_get(f, "kind"), *prefix = json_object_get(f, "prefix"),
	       *where = json_object_get(f, "where"), *wl = json_object_get(f, "workload");
	const char *fp = json_string_value(json_object_get(f, "fingerprint"));
	const char *src = json_string_value(json_object_get(f, "source"));

	if (!json_is_object(f))
		return bad(err, cap, "findings[%zu]: not an object", i);
	if (!charset_ok(json_string_value(kind), json_string_length(kind), 1, 48, "a0", "-"))
		return bad(err, cap, "findings[%zu].kind: 1 to 48 of [a-z0-9-]", i);
	if (!charset_ok(json_string_value(prefix), json_string_length(prefix), 0, 31, "aA0", "_-"))
		return bad(err, cap, "findings[%zu].prefix: 0 to 31 of [A-Za-z0-9_-]", i);
	if (!fingerprint_ok(fp))
		return bad(err, cap, "findings[%zu].fingerprint: \"sha256:\" and 12 hex digits", i);
	if (!src || (strcmp(src, "file") != 0 && strcmp(src, "process") != 0))
		return bad(err, cap, "findings[%zu].source: \"file\" or \"process\"", i);
	if (!text_ok(where, SCAN_REPORT_WHERE_MAX))
		return bad(err, cap,
			   "findings[%zu].where: 1 to %d bytes without control characters", i,
			   SCAN_REPORT_WHERE_MAX);
	if (wl && !json_is_null(wl) && !text_ok(wl, SCAN_REPORT_NAME_MAX))
		return bad(err, cap,
			   "findings[%zu].workload: null, or 1 to %d bytes without control "
			   "characters",
			   i, SCAN_REPORT_NAME_MAX);
	json_t *o =
	    json_pack("{s:O,s:O,s:s,s:s,s:O,s:O}", "kind", kind, "prefix", prefix, "fingerprint",
		      fp, "source", src, "where", where, "workload", wl ? wl : json_null());
	return o ? o : bad(err, cap, "out of memory");
}

json_t *scan_report_check(json_t *in, char *err, size_t cap)
{
	json_int_t total, places, processes, files;
	json_t *findings = json_object_get(in, "findings"), *tr = json_object_get(in, "truncated");
	json_t *out_f = NULL, *seen = NULL, *f, *o = NULL;
	size_t i;

	if (err && cap)
		err[0] = '\0';
	if (!json_is_object(in))
		return bad(err, cap, "a report is a JSON object");
	if (!count_ok(in, "total", &total) || !count_ok(in, "places", &places) ||
	    !count_ok(in, "processes", &processes) || !count_ok(in, "files", &files))
		return bad(err, cap, "total, places, processes and files: integers 0..%lld",
			   SCAN_REPORT_COUNT_MAX);
	if (tr && !json_is_boolean(tr))
		return bad(err, cap, "truncated: a boolean");
	if (!json_is_array(findings) || json_array_size(findings) > SCAN_REPORT_MAX_FINDINGS)
		return bad(err, cap, "findings: an array of at most %d", SCAN_REPORT_MAX_FINDINGS);
	out_f = json_array();
	seen = json_object();
	if (!out_f || !seen) {
		bad(err, cap, "out of memory");
		goto out;
	}
	json_array_foreach(findings, i, f)
	{
		json_t *c = finding(f, i, err, cap);
		if (!c || json_array_append_new(out_f, c) < 0)
			goto out;
		json_object_set(seen, json_string_value(json_object_get(c, "fingerprint")),
				json_true());
	}
	if (total > places || json_object_size(seen) > (size_t)total ||
	    json_array_size(out_f) > (size_t)places) {
		bad(err, cap, "inconsistent counts: total %lld, places %lld, %zu finding(s)",
		    (long long)total, (long long)places, json_array_size(out_f));
		goto out;
	}
	if (!json_is_true(tr) &&
	    ((size_t)places != json_array_size(out_f) || (size_t)total != json_object_size(seen))) {
		bad(err, cap,
		    "an untruncated report lists every place (%lld, %zu listed) and counts its "
		    "distinct fingerprints (%lld, %zu listed)",
		    (long long)places, json_array_size(out_f), (long long)total,
		    json_object_size(seen));
		goto out;
	}
	o = json_pack("{s:I,s:I,s:I,s:I,s:b,s:O}", "total", total, "places", places, "processes",
		      processes, "files", files, "truncated", json_is_true(tr), "findings", out_f);
	if (!o)
		bad(err, cap, "out of memory");
out:
	json_decref(out_f);
	json_decref(seen);
	return o;
}
