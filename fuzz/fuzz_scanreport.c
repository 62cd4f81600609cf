/* fuzz_scanreport — scan/report.c: the static-key scan summary vouchd accepts on its admin
 * socket ({"cmd":"scan-report"}) and reads back from <stateDir>/static-keys.json.
 *
 * Input: one JSON text (parsed as vouchd parses both: jansson, duplicates refused).
 * Checks, besides memory safety: a refusal says why; an accepted report is canonical —
 * checking it again accepts it unchanged — holds at most SCAN_REPORT_MAX_FINDINGS
 * findings, no more than "places" and no more distinct fingerprints than "total", and
 * no byte below 0x20 or DEL in any string it keeps. */
#include "fuzz.h"

#include "scan/report.h"

#include <jansson.h>

static void no_controls(json_t *v)
{
	const char *k;
	json_t *x;
	size_t i;

	if (json_is_string(v)) {
		const unsigned char *s = (const unsigned char *)json_string_value(v);
		for (size_t n = 0; n < json_string_length(v); n++)
			FUZZ_CHECK(s[n] >= 0x20 && s[n] != 0x7f);
	} else if (json_is_object(v)) {
		json_object_foreach(v, k, x) no_controls(x);
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x) no_controls(x);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256] = "", err2[256] = "";
	json_t *in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	json_t *r, *again;

	if (!in)
		return 0;
	r = scan_report_check(in, err, sizeof(err));
	if (!r) {
		FUZZ_CHECK(err[0] != '\0');
		json_decref(in);
		return 0;
	}
	json_t *f = json_object_get(r, "findings");
	FUZZ_CHECK(json_is_array(f) && json_array_size(f) <= SCAN_REPORT_MAX_FINDINGS);
	FUZZ_CHECK(json_array_size(f) <= (size_t)json_integer_value(json_object_get(r, "places")));
	FUZZ_CHECK(json_integer_value(json_object_get(r, "total")) <=
		   json_integer_value(json_object_get(r, "places")));
	no_controls(r);
	again = scan_report_check(r, err2, sizeof(err2));
	FUZZ_CHECK(again != NULL);
	FUZZ_CHECK(json_equal(again, r));
	json_decref(again);
	json_decref(r);
	json_decref(in);
	return 0;
}
