/* errors — JSON error responses (see errors.h). */
#include "proxy/errors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *reason_phrase(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Error";
	}
}

int proxy_error_response(int status, const char *type, const char *message, bool close,
			 char *out, size_t cap, size_t *ret_len)
{
	return proxy_error_response_retry(status, type, message, close, 0, out, cap, ret_len);
}

int proxy_error_response_retry(int status, const char *type, const char *message, bool close,
			       unsigned retry_after, char *out, size_t cap, size_t *ret_len)
{
	char retry[40] = "";
	char msg[1024];
	json_t *o;
	char *body = NULL;
	int n, ret = -ENOMEM;

	/* printable ASCII only: an exe path may hold anything, and JSON needs UTF-8 */
	snprintf(msg, sizeof(msg), "%s", message);
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
			*c = '?';
	o = json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type", type, "message", msg);
	if (!o)
		goto out;
	body = json_dumps(o, JSON_COMPACT);
	if (!body)
		goto out;
	if (retry_after)
		snprintf(retry, sizeof(retry), "Retry-After: %u\r\n", retry_after);
	n = snprintf(out, cap,
		     "HTTP/1.1 %03d %s\r\nContent-Type: application/json\r\nContent-Length: "
		     "%zu\r\n%s%sx-vouch-error: 1\r\n\r\n%s",
		     status, reason_phrase(status), strlen(body),
		     close ? "Connection: close\r\n" : "", retry, body);
	if (n < 0 || (size_t)n >= cap)
		goto out;
	*ret_len = (size_t)n;
	ret = 0;
out:
	free(body);
	json_decref(o);
	return ret;
}
