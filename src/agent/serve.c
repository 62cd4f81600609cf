#include "agent/agent.h"
#include "common/net.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

void agent_serve_sequential(struct agent *a, int listen_fd, void (*serve)(struct agent *, int))
{
	int reserve = net_reserve_fd();

	while (!atomic_load(&a->stopping)) {
		struct pollfd p = {.fd = listen_fd, .events = POLLIN};
		if (poll(&p, 1, 500) <= 0)
			continue;
		/* out of descriptors, a pending client is closed (no spin on poll) */
		int fd = net_accept(listen_fd, SOCK_CLOEXEC, &reserve, NULL, NULL);
		if (fd < 0)
			continue;
		struct timeval tv = {.tv_sec = 2};
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		serve(a, fd);
		close(fd);
	}
	if (reserve >= 0)
		close(reserve);
}
