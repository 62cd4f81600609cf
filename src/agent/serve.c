#include "agent/agent.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

void agent_serve_sequential(struct agent *a, int listen_fd, void (*serve)(struct agent *, int))
{
	while (!atomic_load(&a->stopping)) {
		struct pollfd p = {.fd = listen_fd, .events = POLLIN};
		if (poll(&p, 1, 500) <= 0)
			continue;
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		struct timeval tv = {.tv_sec = 2};
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		serve(a, fd);
		close(fd);
	}
}
