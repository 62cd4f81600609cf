/* Unit tests for src/intercept without privileges: the redirect decision the BPF programs
 * make (icpt_decide, the same inline code), the v4-mapped test, the conns-map key the
 * proxy builds from accept()'s peer, and the cgroup2 mount point parser. The real hooks
 * are exercised in test_intercept_hooks.c (root). */
#include "intercept/intercept.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static void test_decide(void)
{
	struct icpt_conf c;

	memset(&c, 0, sizeof(c));
	c.enabled = 1;
	c.agent_tgid = 4242;
	ok(icpt_decide(NULL, 1, 1, 1, 1) == ICPT_REASON_NONE, "no conf: nothing redirected");
	ok(icpt_decide(&c, 1, 1, 0, 1) == ICPT_REASON_DEST, "destination hit: redirected (DEST)");
	ok(icpt_decide(&c, 1, 0, 1, 1) == ICPT_REASON_PORT, "port hit: redirected (PORT)");
	ok(icpt_decide(&c, 1, 1, 1, 1) == ICPT_REASON_DEST, "both hits: DEST wins over PORT");
	ok(icpt_decide(&c, 1, 0, 0, 1) == ICPT_REASON_NONE, "neither hit: untouched");
	ok(icpt_decide(&c, 4242, 1, 1, 1) == ICPT_REASON_NONE,
	   "the agent's own connections are never redirected, even to a captured address");
	ok(icpt_decide(&c, 4243, 1, 0, 1) == ICPT_REASON_DEST, "a neighbouring tgid is redirected");
	ok(icpt_decide(&c, 1, 1, 1, 0) == ICPT_REASON_NONE,
	   "no listener for the family: untouched");
	c.enabled = 0;
	ok(icpt_decide(&c, 1, 1, 1, 1) == ICPT_REASON_NONE, "disabled: untouched");
	c.enabled = 7;
	ok(icpt_decide(&c, 1, 1, 0, 1) == ICPT_REASON_DEST, "any nonzero enabled counts as on");
	c.agent_tgid = 0;
	ok(icpt_decide(&c, 0, 1, 0, 1) == ICPT_REASON_NONE &&
	       icpt_decide(&c, 5, 1, 0, 1) == ICPT_REASON_DEST,
	   "agent_tgid 0 only exempts tgid 0 (the idle task), nobody else");
}

static void test_v4mapped(void)
{
	struct in6_addr a;
	__u32 w[4];

	inet_pton(AF_INET6, "::ffff:127.1.2.3", &a);
	memcpy(w, &a, sizeof(w));
	ok(icpt_is_v4mapped(w) && w[3] == inet_addr("127.1.2.3"), "::ffff:127.1.2.3 is v4-mapped");
	inet_pton(AF_INET6, "::1", &a);
	memcpy(w, &a, sizeof(w));
	ok(!icpt_is_v4mapped(w), "::1 is not v4-mapped");
	inet_pton(AF_INET6, "::127.1.2.3", &a); /* deprecated v4-compatible form */
	memcpy(w, &a, sizeof(w));
	ok(!icpt_is_v4mapped(w), "::127.1.2.3 (v4-compatible) is not v4-mapped");
	inet_pton(AF_INET6, "::fffe:127.1.2.3", &a);
	memcpy(w, &a, sizeof(w));
	ok(!icpt_is_v4mapped(w), "::fffe:a.b.c.d is not v4-mapped");
	inet_pton(AF_INET6, "1::ffff:127.1.2.3", &a);
	memcpy(w, &a, sizeof(w));
	ok(!icpt_is_v4mapped(w), "a nonzero prefix is not v4-mapped");
	inet_pton(AF_INET6, "64:ff9b::127.1.2.3", &a); /* NAT64, RFC 6052 */
	memcpy(w, &a, sizeof(w));
	ok(!icpt_is_v4mapped(w), "the NAT64 prefix is not v4-mapped");
}

static void test_lookup_args(void)
{
	struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(40001)};
	struct icpt_orig o;

	ok(intercept_lookup(NULL, (struct sockaddr *)&s4, (struct sockaddr *)&s4, &o) == -EINVAL,
	   "lookup without a handle: -EINVAL");
}

#define MI_HDR "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"

static int parse(const char *text, char *buf, size_t cap)
{
	return intercept_parse_cgroup2_root(text, strlen(text), buf, cap);
}

static void test_mountinfo(void)
{
	char buf[256];
	int r;

	r = parse(MI_HDR "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
			 "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
			 "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
		  buf, sizeof(buf));
	ok(r == 0 && strcmp(buf, "/sys/fs/cgroup/unified") == 0,
	   "hybrid layout: the unified mount");

	r = parse("30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 "
		  "cgroup2 rw,nsdelegate,memory_recursiveprot",
		  buf, sizeof(buf));
	ok(r == 0 && strcmp(buf, "/sys/fs/cgroup") == 0,
	   "unified layout with optional fields and no trailing newline");

	r = parse("40 30 0:26 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n"
		  "41 30 0:26 / /mnt/cg rw - cgroup2 cgroup2 rw\n",
		  buf, sizeof(buf));
	ok(r == 0 && strcmp(buf, "/mnt/cg") == 0, "a mount of the hierarchy's root is preferred");

	r = parse("40 30 0:26 /kubepods/pod1 /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n", buf,
		  sizeof(buf));
	ok(r == 0 && strcmp(buf, "/sys/fs/cgroup") == 0,
	   "else the first cgroup2 mount (a namespaced view)");

	r = parse("41 31 0:38 / /tmp/my\\040cg\\134x rw - cgroup2 none rw\n", buf, sizeof(buf));
	ok(r == 0 && strcmp(buf, "/tmp/my cg\\x") == 0, "octal escapes (\\040, \\134) are decoded");

	r = parse("41 31 0:38 / /tmp/a\\04 rw - cgroup2 none rw\n", buf, sizeof(buf));
	ok(r == 0 && strcmp(buf, "/tmp/a\\04") == 0,
	   "a truncated escape at the end is kept literally");

	r = parse("41 31 0:38 / /tmp/a\\000b rw - cgroup2 none rw\n", buf, sizeof(buf));
	ok(r == -EINVAL, "an escaped NUL is refused");

	r = parse(MI_HDR "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", buf,
		  sizeof(buf));
	ok(r == -ENOENT, "cgroup v1 only: -ENOENT");

	ok(parse("", buf, sizeof(buf)) == -ENOENT, "empty text: -ENOENT");

	r = parse("41 31 0:38 / /sys/fs/cgroup rw cgroup2 cgroup2 rw\n" /* no separator */
		  "41 31 0:38 / /x rw -\n"				/* no fstype */
		  "41 31 0:38 /\n"					/* truncated */
		  "   \n\n"						/* blank */
		  "41 31 0:38 / /y rw - cgroup2x cgroup2 rw\n"		/* near miss */
		  "41 31 0:38 / /z rw - cgroup2 cgroup2 rw\n",
		  buf, sizeof(buf));
	ok(r == 0 && strcmp(buf, "/z") == 0, "malformed and near-miss lines are skipped");

	r = parse("41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n", buf, 23);
	ok(r == 0 && strcmp(buf, "/sys/fs/cgroup/unified") == 0, "exact fit (22 chars + NUL)");
	r = parse("41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n", buf, 22);
	ok(r == -ENAMETOOLONG, "one byte short: -ENAMETOOLONG");
	ok(intercept_parse_cgroup2_root("x", 1, buf, 0) == -EINVAL, "zero capacity: -EINVAL");

	/* "- cgroup2" in the optional fields must not be mistaken for the separator position:
	 * the separator is the first lone "-" from field 7 on */
	r = parse("41 31 0:38 / /a rw shared:1 - tmpfs cgroup2 rw\n", buf, sizeof(buf));
	ok(r == -ENOENT, "the source field named cgroup2 is not the fs type");

	/* 40 fields (more than the parser keeps) and a huge line */
	{
		char big[8192];
		size_t o = 0;

		o += (size_t)snprintf(big + o, sizeof(big) - o, "41 31 0:38 / /many rw");
		for (int i = 0; i < 40; i++)
			o += (size_t)snprintf(big + o, sizeof(big) - o, " opt:%d", i);
		o += (size_t)snprintf(big + o, sizeof(big) - o, " - cgroup2 cgroup2 rw\n");
		memset(big + o, 'a', 4000);
		o += 4000;
		o += (size_t)snprintf(big + o, sizeof(big) - o,
				      "\n41 31 0:38 / /ok rw - cgroup2 c rw\n");
		r = intercept_parse_cgroup2_root(big, o, buf, sizeof(buf));
		ok(r == 0 && strcmp(buf, "/ok") == 0,
		   "a line with too many fields and a 4000-byte junk line are skipped");
	}

	{
		char *huge = malloc(INTERCEPT_MOUNTINFO_MAX + 2);

		memset(huge, ' ', INTERCEPT_MOUNTINFO_MAX + 1);
		ok(intercept_parse_cgroup2_root(huge, INTERCEPT_MOUNTINFO_MAX + 1, buf,
						sizeof(buf)) == -E2BIG,
		   "text over INTERCEPT_MOUNTINFO_MAX: -E2BIG");
		free(huge);
	}

	/* the live one (any machine with cgroup2 mounted) */
	r = intercept_cgroup2_root(buf, sizeof(buf));
	if (r == -ENOENT)
		skip("no cgroup2 mount on this machine");
	else
		ok(r == 0 && buf[0] == '/', "this machine's cgroup2 mount: %s", r == 0 ? buf : "?");
}

static void test_open_args(void)
{
	struct intercept_opts o = {.cgroup_path = "/nonexistent/vouch",
				   .listen4 = "127.0.0.1:7803"};
	struct intercept *ic = (struct intercept *)&o; /* must stay untouched on failure */
	char err[256];

	ok(intercept_open(NULL, &ic, err, sizeof(err)) == -EINVAL && ic == (struct intercept *)&o,
	   "no options: -EINVAL, *ret untouched");
	o.listen4 = "127.0.0.1";
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -EINVAL && strstr(err, "127.0.0.1"),
	   "listen4 without a port: -EINVAL naming it (%s)", err);
	o.listen4 = "127.0.0.1:0";
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -EINVAL, "listen4 port 0: -EINVAL");
	o.listen4 = "127.0.0.1:65536";
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -EINVAL, "listen4 port 65536: -EINVAL");
	o.listen4 = "127.0.0.1:+80";
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -EINVAL,
	   "listen4 port with a sign: -EINVAL");
	o.listen4 = "[::1]:7803";
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -EINVAL,
	   "an IPv6 address as listen4: -EINVAL");
	o.listen4 = "127.0.0.1.127.0.0.1.127.0.0.1:80";
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -EINVAL,
	   "an oversize host in listen4: -EINVAL");
	o.listen4 = NULL;
	o.listen6 = "::1:7803";
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -EINVAL,
	   "listen6 without brackets: -EINVAL");
	o.listen6 = "[::ffff:127.0.0.1]:7803";
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -EINVAL, "a v4-mapped listen6: -EINVAL");
	o.listen6 = "[::1]7803";
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -EINVAL,
	   "listen6 without ':' after ']': -EINVAL");
	o.listen6 = NULL;
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -EINVAL && strstr(err, "listener"),
	   "no listener at all: -EINVAL (%s)", err);
	o.listen6 = "[::1]:7803";
	o.cgroup_path = "";
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -EINVAL, "empty cgroup path: -EINVAL");
	o.cgroup_path = "/nonexistent/vouch";
	ok(intercept_open(&o, &ic, err, sizeof(err)) == -ENOENT &&
	       strstr(err, "/nonexistent/vouch"),
	   "a cgroup whose parent does not exist: -ENOENT naming it (%s)", err);
	o.cgroup_path = "/tmp";
	ok(intercept_open(&o, &ic, err, sizeof(err)) < 0 && ic == (struct intercept *)&o,
	   "a directory outside cgroup2 (or no privilege) is refused (%s)", err);
	intercept_close(NULL);
	ok(1, "intercept_close(NULL) is a no-op");
	ok(intercept_set_dests(NULL, NULL, 0) == -EINVAL &&
	       intercept_set_ports(NULL, NULL, 0) == -EINVAL,
	   "set_dests/set_ports without a handle: -EINVAL");
}

int main(void)
{
	test_decide();
	test_v4mapped();
	test_lookup_args();
	test_mountinfo();
	test_open_args();
	return tap_done();
}
