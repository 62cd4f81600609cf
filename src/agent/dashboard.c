/* dashboard — see dashboard.h. */
#include "agent/dashboard.h"

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

/* Host names this listener (on loopback) answers to: "localhost", an IPv4 literal in
 * 127.0.0.0/8, "[::1]", each with an optional decimal port. Anything else is a name
 * someone pointed at 127.0.0.1 (DNS rebinding) or a confused client. */
static bool host_is_loopback(const char *host)
{
	char h[64];
	size_t n;
	const char *port;

	if (!host)
		return false;
	if (host[0] == '[') {
		const char *end = strchr(host, ']');
		if (!end || (size_t)(end - host + 1) != 5 || strncmp(host, "[::1]", 5) != 0)
			return false;
		port = end + 1;
		n = 0;
	} else {
		port = strchr(host, ':');
		n = port ? (size_t)(port - host) : strlen(host);
		if (!port)
			port = host + n;
		if (n == 0 || n >= sizeof(h))
			return false;
		memcpy(h, host, n);
		h[n] = '\0';
	}
	if (*port) {
		if (*port != ':' || !port[1] || strlen(port + 1) > 5)
			return false;
		for (const char *p = port + 1; *p; p++)
			if (!isdigit((unsigned char)*p))
				return false;
	}
	if (host[0] == '[')
		return true;
	if (strcasecmp(h, "localhost") == 0)
		return true;
	/* 127.a.b.c, each part 0..255, digits only */
	unsigned parts = 0, v = 0, digits = 0;
	for (const char *p = h;; p++) {
		if (isdigit((unsigned char)*p)) {
			v = v * 10 + (unsigned)(*p - '0');
			if (++digits > 3 || v > 255)
				return false;
		} else if (*p == '.' || *p == '\0') {
			if (digits == 0 || (parts == 0 && v != 127))
				return false;
			parts++;
			v = digits = 0;
			if (*p == '\0')
				break;
		} else {
			return false;
		}
	}
	return parts == 4;
}

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
	if (!host_is_loopback(host)) {
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
