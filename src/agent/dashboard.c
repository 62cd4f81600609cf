/* dashboard — see dashboard.h. */
#include "agent/dashboard.h"

#include "common/net.h"

#include "agent/status.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char dashboard_headers[] =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Cache-Control: no-store\r\n";

static void set_text(struct dash_resp *r, int status, const char *text)
{
	r->status = status;
	r->ctype = "text/plain; charset=utf-8";
	r->body = text;
	r->len = strlen(text);
}

int dashboard_handle(struct agent *a, const char *method, const char *target, const char *host,
		     struct dash_resp *r)
{
	char path[128];
	size_t n = strcspn(target, "?#");

	memset(r, 0, sizeof(*r));
	if (n >= sizeof(path))
		return -ENOENT;
	memcpy(path, target, n);
	path[n] = '\0';
	bool api = strcmp(path, "/api/status") == 0 || strcmp(path, "/dashboard/api/status") == 0;
	if (!api && strcmp(path, "/dashboard") != 0 && strncmp(path, "/dashboard/", 11) != 0)
		return -ENOENT;
	if (!net_host_is_loopback(host, NULL)) {
		set_text(r, 421,
			 "vouch: the dashboard answers only to a loopback Host "
			 "(127.0.0.1, [::1] or localhost)\n");
		return 0;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		set_text(r, 405, "vouch: the dashboard is read-only (GET)\n");
		return 0;
	}
	if (api) {
		json_t *st = a ? agent_status(a) : NULL;
		r->owned = st ? json_dumps(st, JSON_COMPACT) : NULL;
		json_decref(st);
		if (!r->owned) {
			set_text(r, 503, "vouch: status unavailable\n");
			return 0;
		}
		r->status = 200;
		r->ctype = "application/json";
		r->body = r->owned;
		r->len = strlen(r->owned);
		return 0;
	}
	if (strcmp(path, "/dashboard") == 0) {
		r->status = 301;
		r->location = "/dashboard/";
		set_text(r, 301, "see /dashboard/\n");
		return 0;
	}
	const char *file = path + 11;
	if (*file == '\0')
		file = "index.html";
	for (const struct dash_asset *as = dashboard_assets; as->name; as++) {
		if (strcmp(as->name, file) == 0) {
			r->status = 200;
			r->ctype = as->ctype;
			r->body = (const char *)as->data;
			r->len = as->len;
			return 0;
		}
	}
	set_text(r, 404, "vouch: no such dashboard file\n");
	return 0;
}

void dash_resp_done(struct dash_resp *r)
{
	free(r->owned);
	r->owned = NULL;
}
