/* statickeys — the last static-key scan reported to vouchd (issue 7.2, 7.7): `vouch scan
 * --report` sends its summary ({"cmd":"scan-report"}: kinds, public prefixes,
 * fingerprints, places; never a secret, scan/report.h), vouchd keeps it for `vouch
 * status`, the dashboard and the vouch_static_keys gauge, and saves it to
 * <state dir>/static-keys.json (crash-safe, mode 0600) so the figure survives a restart.
 *
 * vouchd does not scan by itself: reading every process's environment is the scanner's
 * job, run as an ordinary root command (contrib/vouch-scan.timer runs it hourly); the
 * agent only holds the result. The saved file is read back as untrusted input (the same
 * check as the socket's); a corrupt one is moved aside and the agent starts with no
 * report. */
#include "agent/agent.h"

#include "common/log.h"
#include "common/readfile.h"
#include "common/statefile.h"
#include "scan/report.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define STATIC_KEYS_FILE "static-keys.json"
#define STATIC_KEYS_FILE_MAX (2u << 20)
#define STATIC_KEYS_VERSION 1

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int keys_path(const struct agent *a, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%s", a->cfg.state_dir, STATIC_KEYS_FILE);

	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* The stored document: the checked report plus "version", "scanned" (seconds since the
 * epoch, vouchd's clock when the report arrived) and "by" (the reporting peer). NULL with
 * why in err when doc is not one. */
static json_t *stored_check(json_t *doc, char *err, size_t cap)
{
	json_t *v = json_object_get(doc, "version"), *sc = json_object_get(doc, "scanned");
	const char *by = json_string_value(json_object_get(doc, "by"));
	json_t *r;

	if (!json_is_integer(v) || json_integer_value(v) != STATIC_KEYS_VERSION) {
		snprintf(err, cap, "version: expected %d", STATIC_KEYS_VERSION);
		return NULL;
	}
	if (!json_is_integer(sc) || json_integer_value(sc) <= 0) {
		snprintf(err, cap, "scanned: a positive integer");
		return NULL;
	}
	if (!by || strlen(by) > 64 || strspn(by, "uidp 0123456789") != strlen(by)) {
		snprintf(err, cap, "by: \"uid U pid P\"");
		return NULL;
	}
	r = scan_report_check(doc, err, cap);
	if (r) {
		json_object_set_new(r, "version", json_integer(STATIC_KEYS_VERSION));
		json_object_set(r, "scanned", sc);
		json_object_set_new(r, "by", json_string(by));
	}
	return r;
}

int agent_static_keys_open(struct agent *a)
{
	char path[4096], err[256] = "";
	char *buf = NULL;
	size_t len = 0;
	json_error_t jerr;
	json_t *doc = NULL, *r = NULL;
	int ret = keys_path(a, path, sizeof(path));

	if (ret == 0)
		ret = readfile_path(path, O_NOFOLLOW, STATIC_KEYS_FILE_MAX, &buf, &len);
	if (ret == -ENOENT)
		return 0;
	if (ret == 0) {
		doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
		if (!doc)
			snprintf(err, sizeof(err), "line %d column %d: %s", jerr.line, jerr.column,
				 jerr.text);
		else
			r = stored_check(doc, err, sizeof(err));
	} else {
		snprintf(err, sizeof(err), "%s", strerror(-ret));
	}
	free(buf);
	json_decref(doc);
	if (r) {
		pthread_mutex_lock(&lock);
		json_decref(a->static_keys);
		a->static_keys = r;
		pthread_mutex_unlock(&lock);
		log_info("static keys: the last scan report (%lld key(s)) from %s",
			 (long long)json_integer_value(json_object_get(r, "total")), path);
		return 0;
	}
	agent_set_aside(path, err, "no scan report until the next `vouch scan --report`");
	return 0;
}

void agent_static_keys_close(struct agent *a)
{
	pthread_mutex_lock(&lock);
	json_decref(a->static_keys);
	a->static_keys = NULL;
	pthread_mutex_unlock(&lock);
}

json_t *agent_scan_report(struct agent *a, json_t *req, const struct ucred *cred)
{
	char err[256], path[4096], actor[64], why[128];
	json_t *r = scan_report_check(req, err, sizeof(err));
	int saved;

	if (!r)
		return json_pack("{s:s+}", "error", "scan-report: ", err);
	snprintf(actor, sizeof(actor), "uid %u pid %d", (unsigned)cred->uid, (int)cred->pid);
	json_object_set_new(r, "version", json_integer(STATIC_KEYS_VERSION));
	json_object_set_new(r, "scanned", json_integer((json_int_t)time(NULL)));
	json_object_set_new(r, "by", json_string(actor));
	/* one writer of the file at a time: the lock covers the save and the swap */
	pthread_mutex_lock(&lock);
	saved = keys_path(a, path, sizeof(path));
	if (saved == 0)
		saved = statefile_write_json(path, r, 0600);
	json_decref(a->static_keys);
	a->static_keys = json_incref(r);
	pthread_mutex_unlock(&lock);
	if (saved < 0)
		log_err("saving the scan report to %s: %s (kept in memory until a restart)", path,
			strerror(-saved));
	json_int_t total = json_integer_value(json_object_get(r, "total"));
	json_int_t places = json_integer_value(json_object_get(r, "places"));
	snprintf(why, sizeof(why), "%lld static key(s) in %lld place(s)", (long long)total,
		 (long long)places);
	audit_emit(a->audit,
		   &(struct audit_rec){
		       .event = "scan-report", .actor = actor, .reason = why, .expires_in = -1});
	log_info("scan report from %s: %s", actor, why);
	json_decref(r);
	json_t *o = json_pack("{s:b,s:I,s:I,s:b}", "accepted", true, "total", total, "places",
			      places, "persisted", saved == 0);
	if (o && saved < 0)
		json_object_set_new(o, "warning", json_pack("s+", "not saved: ", strerror(-saved)));
	return o;
}

json_t *agent_static_keys_status(struct agent *a)
{
	json_t *o;

	pthread_mutex_lock(&lock);
	o = a->static_keys ? json_deep_copy(a->static_keys) : NULL;
	pthread_mutex_unlock(&lock);
	if (!o)
		return json_null();
	json_object_set_new(o, "scanned",
			    agent_time_json(json_integer_value(json_object_get(o, "scanned"))));
	json_object_del(o, "version");
	return o;
}

bool agent_static_keys_total(struct agent *a, int64_t *total, int64_t *scanned)
{
	bool have;

	pthread_mutex_lock(&lock);
	have = a->static_keys != NULL;
	if (have) {
		*total = json_integer_value(json_object_get(a->static_keys, "total"));
		*scanned = json_integer_value(json_object_get(a->static_keys, "scanned"));
	}
	pthread_mutex_unlock(&lock);
	return have;
}
