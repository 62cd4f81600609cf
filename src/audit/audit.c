#include "audit/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct audit {
	int fd;
	bool own_fd;
	pthread_mutex_t lock;
};

int audit_open(const char *path, struct audit **ret)
{
	struct audit *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	if (strcmp(path, "-") == 0) {
		a->fd = STDERR_FILENO;
	} else {
		a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (a->fd < 0) {
			int e = -errno;
			free(a);
			return e;
		}
		a->own_fd = true;
	}
	pthread_mutex_init(&a->lock, NULL);
	*ret = a;
	return 0;
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	if (a->own_fd)
		close(a->fd);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

static void put_str(json_t *o, const char *k, const char *v)
{
	if (v && *v)
		json_object_set_new(o, k, json_string(v));
}

void audit_emit(struct audit *a, const struct audit_rec *r)
{
	struct timespec now;
	char ts[64], *line;
	struct tm tm;
	json_t *o;
	size_t n;

	if (!a || !r)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
	o = json_object();
	if (!o)
		return;
	json_object_set_new(o, "ts", json_string(ts));
	put_str(o, "event", r->event);
	put_str(o, "workload", r->workload_id);
	if (r->pid > 0)
		json_object_set_new(o, "pid", json_integer(r->pid));
	put_str(o, "exe", r->exe);
	put_str(o, "destination", r->destination);
	put_str(o, "audience", r->audience);
	put_str(o, "source", r->source);
	put_str(o, "binding", r->binding);
	put_str(o, "method", r->method);
	put_str(o, "path", r->path);
	if (r->status)
		json_object_set_new(o, "status", json_integer(r->status));
	put_str(o, "token_fp", r->fingerprint);
	put_str(o, "jti", r->jti);
	if (r->expires_in >= 0 && (r->fingerprint || r->jti))
		json_object_set_new(o, "expires_in", json_integer(r->expires_in));
	put_str(o, "reason", r->reason);
	/* json_dumps escapes control bytes, so a hostile path cannot break the line. */
	line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!line)
		return;
	n = strlen(line);
	line[n] = '\n'; /* overwrite the NUL: written with its length below */
	pthread_mutex_lock(&a->lock);
	for (size_t off = 0; off < n + 1;) {
		ssize_t w = write(a->fd, line + off, n + 1 - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)w;
	}
	pthread_mutex_unlock(&a->lock);
	free(line);
}
