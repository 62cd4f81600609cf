/* Unit tests for src/agent/tracker.c with real child processes and a recording drop
 * callback. The agent's objects are not in libvouch.a: the module is compiled in here.
 * Waits are bounded (a missing event fails the test after 10 s); nothing asserts how
 * fast an event arrives. */
#include "agent/tracker.c"

#include "tap.h"

#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

struct rec {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char paths[16][64];
	pid_t pids[16];
	int n;
};

static void on_drop(void *ctx, const char *path, pid_t pid)
{
	struct rec *r = ctx;

	pthread_mutex_lock(&r->mu);
	if (r->n < 16) {
		snprintf(r->paths[r->n], sizeof(r->paths[0]), "%s", path);
		r->pids[r->n] = pid;
	}
	r->n++;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* Wait until at least n drops were recorded (bounded: 10 s). */
static bool wait_drops(struct rec *r, int n)
{
	struct timespec dl;
	bool okk;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10;
	pthread_mutex_lock(&r->mu);
	while (r->n < n)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &dl) == ETIMEDOUT)
			break;
	okk = r->n >= n;
	pthread_mutex_unlock(&r->mu);
	return okk;
}

/* Wait until the tracker follows exactly n pids (bounded: 10 s). */
static bool wait_pids(struct tracker *t, size_t n)
{
	for (int i = 0; i < 1000; i++) {
		struct tracker_stats s;
		tracker_get_stats(t, &s);
		if (s.pids == n)
			return true;
		usleep(10000);
	}
	return false;
}

static pid_t spawn_sleeper(void)
{
	pid_t p = fork();

	if (p == 0) {
		for (;;)
			pause();
	}
	return p;
}

static void reap(pid_t p)
{
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
}

int main(void)
{
	struct rec rec = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	struct tracker *t = NULL;
	struct tracker_stats st;
	char longpath[TRACKER_MAX_PATH + 2];
	pid_t a, b, c, z, gone;
	int r;

	ok(tracker_new(NULL, NULL, &t) == -EINVAL, "a drop callback is required");
	r = tracker_new(on_drop, &rec, &t);
	ok(r == 0, "tracker_new (%d)", r);
	if (r < 0)
		return tap_done();

	a = spawn_sleeper();
	b = spawn_sleeper();
	c = spawn_sleeper();
	ok(a > 0 && b > 0 && c > 0, "three child processes");

	ok(tracker_add(t, "demo/w1", a) == 1, "follow a as demo/w1");
	ok(tracker_add(t, "demo/w1", a) == 0, "the same (workload, pid) again is deduplicated");
	ok(tracker_add(t, "demo/w1", b) == 1, "follow b as demo/w1");
	ok(tracker_add(t, "demo/w2", c) == 1, "follow c as demo/w2");
	ok(tracker_add(t, "demo/w3", c) == 1, "one pid may serve two workloads (after an exec)");
	tracker_get_stats(t, &st);
	ok(st.pids == 4 && st.workloads == 3 && st.drops == 0, "stats: 4 pids, 3 workloads");

	/* adversarial arguments */
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	ok(tracker_add(t, "demo/w1", 0) == -EINVAL, "pid 0 is refused");
	ok(tracker_add(t, "demo/w1", -5) == -EINVAL, "a negative pid is refused");
	ok(tracker_add(t, NULL, a) == -EINVAL, "a NULL workload is refused");
	ok(tracker_add(t, "", a) == -EINVAL, "an empty workload is refused");
	ok(tracker_add(t, longpath, a) == -EINVAL, "a workload path over %d bytes is refused",
	   TRACKER_MAX_PATH);
	ok(tracker_add(NULL, "x", a) == -EINVAL, "a NULL tracker is refused");

	reap(a);
	ok(wait_pids(t, 3), "a's exit is noticed");
	ok(rec.n == 0, "no drop while demo/w1 still has b");

	reap(b);
	ok(wait_drops(&rec, 1), "b was demo/w1's last process: a drop");
	ok(rec.n == 1 && strcmp(rec.paths[0], "demo/w1") == 0 && rec.pids[0] == b,
	   "the drop names demo/w1 and pid b");

	reap(c);
	ok(wait_drops(&rec, 3), "c's exit drops both of its workloads");
	ok(rec.n == 3 &&
	       ((strcmp(rec.paths[1], "demo/w2") == 0 && strcmp(rec.paths[2], "demo/w3") == 0) ||
		(strcmp(rec.paths[1], "demo/w3") == 0 && strcmp(rec.paths[2], "demo/w2") == 0)),
	   "demo/w2 and demo/w3 dropped");
	ok(wait_pids(t, 0), "nothing is followed any more");

	/* A process that is gone before it could be followed. */
	gone = spawn_sleeper();
	reap(gone);
	ok(tracker_add(t, "demo/gone", gone) == -ESRCH, "a reaped pid is -ESRCH");
	ok(wait_drops(&rec, 4) && strcmp(rec.paths[3], "demo/gone") == 0,
	   "and its workload is dropped (no live process left)");

	/* A zombie (exited, not reaped): followed, and its exit is seen at once. */
	z = fork();
	if (z == 0)
		_exit(0);
	usleep(100000);
	r = tracker_add(t, "demo/zombie", z);
	ok(r == 1 || r == -ESRCH, "a zombie is accepted (%d)", r);
	ok(wait_drops(&rec, 5) && strcmp(rec.paths[4], "demo/zombie") == 0,
	   "and dropped as exited");
	waitpid(z, NULL, 0);

	/* A gone pid of a workload that still has a live process: no drop. */
	a = spawn_sleeper();
	ok(tracker_add(t, "demo/live", a) == 1, "follow a new a as demo/live");
	gone = spawn_sleeper();
	reap(gone);
	ok(tracker_add(t, "demo/live", gone) == -ESRCH, "a gone pid of demo/live");
	usleep(200000);
	tracker_get_stats(t, &st);
	ok(rec.n == 5 && st.pids == 1, "no drop: demo/live still has a process");

	/* The bound: TRACKER_MAX pairs (this process under many names). */
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < TRACKER_MAX + 64 && rl.rlim_max >= TRACKER_MAX + 64) {
		rl.rlim_cur = TRACKER_MAX + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur >= TRACKER_MAX + 64) {
		int added = 0;
		char name[32];
		for (int i = 0; i < TRACKER_MAX + 10; i++) {
			snprintf(name, sizeof(name), "self/%d", i);
			if (tracker_add(t, name, getpid()) == 1)
				added++;
		}
		ok(added == TRACKER_MAX - 1, "at most %d pairs are followed (%d added)",
		   TRACKER_MAX, added);
		ok(tracker_add(t, "self/more", getpid()) == -ENOSPC, "then -ENOSPC");
	} else {
		skip("RLIMIT_NOFILE %llu is too low to fill the tracker",
		     (unsigned long long)rl.rlim_cur);
		skip("(bound)");
	}
	/* Freed with entries left: no callback afterwards, every pidfd closed. */
	tracker_free(t);
	int n_before = rec.n;
	reap(a);
	usleep(100000);
	ok(rec.n == n_before, "no drop after tracker_free");
	tracker_free(NULL);
	return tap_done();
}
