/* The client side of vouchd's admin socket (one JSON line each way) and small helpers
 * shared by the subcommands. */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define ADMIN_MAX_ANSWER (4 * 1024 * 1024)

json_t *cli_admin_call(const char *path, json_t *req, char *err, size_t err_cap)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char *line = NULL, *buf = NULL;
	size_t len = 0;
	json_t *ans = NULL;
	json_error_t je;
	int fd = -1;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, err_cap, "admin socket path too long");
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(err, err_cap, "vouchd is not reachable at %s: %s", path, strerror(errno));
		goto out;
	}
	line = json_dumps(req, JSON_COMPACT);
	buf = malloc(ADMIN_MAX_ANSWER + 1);
	if (!line || !buf) {
		snprintf(err, err_cap, "out of memory");
		goto out;
	}
	if (write(fd, line, strlen(line)) < 0 || write(fd, "\n", 1) < 0) {
		snprintf(err, err_cap, "admin socket write: %s", strerror(errno));
		goto out;
	}
	while (len < ADMIN_MAX_ANSWER) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 10000) <= 0)
			break;
		ssize_t n = read(fd, buf + len, ADMIN_MAX_ANSWER - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	ans = json_loadb(buf, len, JSON_DISABLE_EOF_CHECK, &je);
	if (!json_is_object(ans)) {
		snprintf(err, err_cap, "malformed answer from vouchd");
		json_decref(ans);
		ans = NULL;
	}
out:
	if (fd >= 0)
		close(fd);
	free(line);
	free(buf);
	return ans;
}

