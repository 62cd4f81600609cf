/* Unit tests for src/scan/report: the scan summary vouchd accepts from `vouch scan
 * --report` and reads back from its state directory. A valid report comes back in
 * canonical form (unknown members dropped); each hostile or inconsistent one is refused
 * with a reason. */
#include "scan/report.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

#define F_ANT                                                                                      \
	"{\"kind\":\"anthropic-api-key\",\"prefix\":\"sk-ant-api03-\",\"fingerprint\":"            \
	"\"sha256:4b4b9ebaec9f\",\"source\":\"process\",\"where\":\"pid 7 env ANTHROPIC_API_KEY "  \
	"(/usr/bin/sleep, uid 65534)\",\"workload\":\"spiffe://t/scan/legacy\"}"
#define F_FILE                                                                                     \
	"{\"kind\":\"generic-secret\",\"prefix\":\"\",\"fingerprint\":\"sha256:a313c26e98a7\","    \
	"\"source\":\"file\",\"where\":\"/srv/app/.env:3\",\"workload\":null}"

static json_t *check(const char *text, char *err, size_t cap)
{
	json_error_t jerr;
	json_t *in = json_loads(text, 0, &jerr), *out;

	if (!in) {
		snprintf(err, cap, "test input does not parse: %s", jerr.text);
		return NULL;
	}
	out = scan_report_check(in, err, cap);
	json_decref(in);
	return out;
}

int main(void)
{
	char err[256], big[4096];
	json_t *r;

	r = check("{\"cmd\":\"scan-report\",\"total\":2,\"places\":3,\"processes\":40,\"files\":9,"
		  "\"truncated\":false,\"extra\":1,\"findings\":[" F_ANT "," F_FILE "," F_ANT "]}",
		  err, sizeof(err));
	ok(r != NULL, "a report with three places of two keys is accepted (%s)", err);
	ok(r && !json_object_get(r, "cmd") && !json_object_get(r, "extra"),
	   "unknown members are not kept");
	ok(r && json_integer_value(json_object_get(r, "total")) == 2 &&
	       json_array_size(json_object_get(r, "findings")) == 3 &&
	       json_is_null(
		   json_object_get(json_array_get(json_object_get(r, "findings"), 1), "workload")),
	   "counts and findings as sent");
	json_decref(r);

	r = check("{\"total\":5,\"places\":300,\"processes\":1,\"files\":1,\"truncated\":true,"
		  "\"findings\":[" F_ANT "]}",
		  err, sizeof(err));
	ok(r != NULL, "a truncated report lists fewer places than it counts (%s)", err);
	json_decref(r);

	r = check("{\"total\":0,\"places\":0,\"processes\":0,\"files\":0,\"findings\":[]}", err,
		  sizeof(err));
	ok(r != NULL && !json_is_true(json_object_get(r, "truncated")),
	   "a clean report (no truncated member) is accepted");
	json_decref(r);

	static const struct {
		const char *text, *why;
	} bad[] = {
	    {"[]", "not an object"},
	    {"{\"places\":0,\"processes\":0,\"files\":0,\"findings\":[]}", "no total"},
	    {"{\"total\":-1,\"places\":0,\"processes\":0,\"files\":0,\"findings\":[]}",
	     "a negative count"},
	    {"{\"total\":0,\"places\":0,\"processes\":0,\"files\":10000000000,\"findings\":[]}",
	     "a count over the limit"},
	    {"{\"total\":\"1\",\"places\":1,\"processes\":0,\"files\":0,\"findings\":[]}",
	     "a count as a string"},
	    {"{\"total\":0,\"places\":0,\"processes\":0,\"files\":0,\"truncated\":1,"
	     "\"findings\":[]}",
	     "truncated not a boolean"},
	    {"{\"total\":0,\"places\":0,\"processes\":0,\"files\":0}", "no findings"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[" F_ANT "," F_ANT
	     "]}",
	     "more findings than places"},
	    {"{\"total\":2,\"places\":1,\"processes\":0,\"files\":0,\"truncated\":true,"
	     "\"findings\":[]}",
	     "more keys than places"},
	    {"{\"total\":1,\"places\":2,\"processes\":0,\"files\":0,\"findings\":[" F_ANT "]}",
	     "untruncated with places unlisted"},
	    {"{\"total\":2,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[" F_ANT "]}",
	     "untruncated, total not the distinct fingerprints"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[{\"kind\":"
	     "\"Anthropic\",\"prefix\":\"\",\"fingerprint\":\"sha256:4b4b9ebaec9f\",\"source\":"
	     "\"file\",\"where\":\"x:1\"}]}",
	     "a kind with capitals"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[{\"kind\":\"k\","
	     "\"prefix\":\"sk ant\",\"fingerprint\":\"sha256:4b4b9ebaec9f\",\"source\":\"file\","
	     "\"where\":\"x:1\"}]}",
	     "a prefix with a space"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[{\"kind\":\"k\","
	     "\"prefix\":\"\",\"fingerprint\":\"sk-ant-api03-AAAAAAAA\",\"source\":\"file\","
	     "\"where\":\"x:1\"}]}",
	     "a fingerprint that is not one (a key pasted in its place)"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[{\"kind\":\"k\","
	     "\"prefix\":\"\",\"fingerprint\":\"sha256:4B4B9EBAEC9F\",\"source\":\"file\","
	     "\"where\":\"x:1\"}]}",
	     "a fingerprint in capitals"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[{\"kind\":\"k\","
	     "\"prefix\":\"\",\"fingerprint\":\"sha256:4b4b9ebaec9f\",\"source\":\"env\","
	     "\"where\":\"x:1\"}]}",
	     "an unknown source"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[{\"kind\":\"k\","
	     "\"prefix\":\"\",\"fingerprint\":\"sha256:4b4b9ebaec9f\",\"source\":\"file\","
	     "\"where\":\"x\\u001b[2J:1\"}]}",
	     "an escape sequence in where"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[{\"kind\":\"k\","
	     "\"prefix\":\"\",\"fingerprint\":\"sha256:4b4b9ebaec9f\",\"source\":\"file\","
	     "\"where\":\"x\\u009b2J:1\"}]}",
	     "a C1 control (CSI) in where"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[{\"kind\":\"k\","
	     "\"prefix\":\"\",\"fingerprint\":\"sha256:4b4b9ebaec9f\",\"source\":\"file\","
	     "\"where\":\"x\\u0000y\"}]}",
	     "a NUL in where"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[{\"kind\":\"k\","
	     "\"prefix\":\"\",\"fingerprint\":\"sha256:4b4b9ebaec9f\",\"source\":\"file\","
	     "\"where\":\"\"}]}",
	     "an empty where"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[{\"kind\":\"k\","
	     "\"prefix\":\"\",\"fingerprint\":\"sha256:4b4b9ebaec9f\",\"source\":\"file\","
	     "\"where\":\"x:1\",\"workload\":7}]}",
	     "a workload that is a number"},
	    {"{\"total\":1,\"places\":1,\"processes\":0,\"files\":0,\"findings\":[7]}",
	     "a finding that is not an object"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		r = check(bad[i].text, err, sizeof(err));
		ok(r == NULL && err[0], "refused (%s): %s", bad[i].why, err);
		json_decref(r);
	}

	/* where: at most SCAN_REPORT_WHERE_MAX bytes */
	memset(big, 'w', sizeof(big));
	big[SCAN_REPORT_WHERE_MAX + 1] = '\0';
	json_t *f = json_pack("{s:s,s:s,s:s,s:s,s:s}", "kind", "k", "prefix", "", "fingerprint",
			      "sha256:4b4b9ebaec9f", "source", "file", "where", big);
	json_t *in = json_pack("{s:i,s:i,s:i,s:i,s:[O]}", "total", 1, "places", 1, "processes", 0,
			       "files", 1, "findings", f);
	r = scan_report_check(in, err, sizeof(err));
	ok(r == NULL, "where over %d bytes is refused: %s", SCAN_REPORT_WHERE_MAX, err);
	json_decref(r);
	big[SCAN_REPORT_WHERE_MAX] = '\0';
	json_object_set_new(f, "where", json_string(big));
	json_array_set(json_object_get(in, "findings"), 0, f);
	r = scan_report_check(in, err, sizeof(err));
	ok(r != NULL, "where of exactly %d bytes is accepted (%s)", SCAN_REPORT_WHERE_MAX, err);
	json_decref(r);

	/* at most SCAN_REPORT_MAX_FINDINGS findings */
	json_t *many = json_array();
	for (int i = 0; i <= SCAN_REPORT_MAX_FINDINGS; i++)
		json_array_append(many, f);
	json_object_set_new(in, "findings", many);
	json_object_set_new(in, "places", json_integer(SCAN_REPORT_MAX_FINDINGS + 1));
	json_object_set_new(in, "truncated", json_true());
	r = scan_report_check(in, err, sizeof(err));
	ok(r == NULL, "%d findings are refused: %s", SCAN_REPORT_MAX_FINDINGS + 1, err);
	json_decref(r);
	json_array_remove(many, 0);
	r = scan_report_check(in, err, sizeof(err));
	ok(r != NULL, "%d findings are accepted (%s)", SCAN_REPORT_MAX_FINDINGS, err);
	json_decref(r);
	json_decref(f);
	json_decref(in);
	return tap_done();
}
