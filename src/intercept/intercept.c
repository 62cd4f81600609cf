/* intercept — loader for the connect-redirection hooks (contract in intercept.h, programs
 * in intercept.bpf.c, how it works in docs/INTERCEPT.md).
 *
 * open → configure → load → attach → serve → detach: the programs are loaded from the
 * skeleton embedded at build time (build/intercept.skel.h), configured through the conf
 * map, and attached to one cgroup v2 directory with bpf_link (multi-attach, never pinned),
 * so that the kernel detaches them when the links' descriptors close: on intercept_close()
 * or when the process dies. */
#include "intercept/intercept.h"

#include "attest/attest.h"

#include "common/readfile.h"

#include "intercept.skel.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define INTERCEPT_BTF_PATH "/sys/kernel/btf/vmlinux"

struct intercept {
	struct intercept_bpf *skel;
	struct bpf_link *links[2]; /* connect6, connect4 */
	int cgroup_fd;
	pthread_mutex_t lock; /* serializes set_dests / set_ports */
};

/* ---- libbpf messages ----
 * libbpf prints to stderr by default; a library module does not log (STYLE §10). The
 * print hook is process-wide in libbpf, so this is a true singleton: keep the first line
 * of the last warning, to be quoted in intercept_open()'s err. */
static pthread_once_t libbpf_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t libbpf_msg_lock = PTHREAD_MUTEX_INITIALIZER;
static char libbpf_msg[200];

/* fmt is libbpf's own printf format (clang's -Wformat-nonliteral wants to be told). */
__attribute__((format(printf, 2, 0))) static int libbpf_print(enum libbpf_print_level level,
							      const char *fmt, va_list ap)
{
	char line[sizeof(libbpf_msg)];

	if (level != LIBBPF_WARN)
		return 0;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	pthread_mutex_lock(&libbpf_msg_lock);
	snprintf(libbpf_msg, sizeof(libbpf_msg), "%s", line);
	pthread_mutex_unlock(&libbpf_msg_lock);
	return 0;
}

static void libbpf_setup(void) { libbpf_set_print(libbpf_print); }

static void libbpf_last(char *buf, size_t cap)
{
	pthread_mutex_lock(&libbpf_msg_lock);
	snprintf(buf, cap, "%s", libbpf_msg);
	libbpf_msg[0] = '\0';
	pthread_mutex_unlock(&libbpf_msg_lock);
}

static void set_err(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (!err || cap == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
}

/* ---- pure helpers ---- */

/* Decode a mountinfo path field (octal escapes \ooo, proc(5)) into buf. */
static int unescape_path(const char *s, size_t n, char *buf, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' &&
		    s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
			c = (char)(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) |
				   (s[i + 3] - '0'));
			i += 3;
		}
		if (c == '\0' || o + 1 >= cap)
			return c == '\0' ? -EINVAL : -ENAMETOOLONG;
		buf[o++] = c;
	}
	if (o >= cap)
		return -ENAMETOOLONG;
	buf[o] = '\0';
	return 0;
}

/* Split one line into space-separated fields (at most max); returns the count. */
static size_t split_fields(const char *line, size_t len, const char **f, size_t *fl, size_t max)
{
	size_t n = 0, i = 0;

	while (i < len && n < max) {
		while (i < len && line[i] == ' ')
			i++;
		if (i >= len)
			break;
		f[n] = line + i;
		while (i < len && line[i] != ' ')
			i++;
		fl[n] = (size_t)(line + i - f[n]);
		n++;
	}
	return n;
}

static bool field_is(const char *f, size_t fl, const char *s)
{
	return fl == strlen(s) && memcmp(f, s, fl) == 0;
}

int intercept_parse_cgroup2_root(const char *text, size_t len, char *buf, size_t cap)
{
	/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS" */
	enum { MAX_FIELDS = 32 };
	const char *any = NULL, *f[MAX_FIELDS];
	size_t any_len = 0, fl[MAX_FIELDS];
	size_t pos = 0;

	if (!text || !buf || cap == 0)
		return -EINVAL;
	if (len > INTERCEPT_MOUNTINFO_MAX)
		return -E2BIG;
	while (pos < len) {
		const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - line) : len - pos, n, dash;

		pos += ll + 1;
		n = split_fields(line, ll, f, fl, MAX_FIELDS);
		for (dash = 6; dash < n && !field_is(f[dash], fl[dash], "-"); dash++)
			;
		if (n < 6 || dash + 1 >= n || !field_is(f[dash + 1], fl[dash + 1], "cgroup2"))
			continue;
		if (field_is(f[3], fl[3], "/"))
			return unescape_path(f[4], fl[4], buf, cap);
		if (!any) {
			any = f[4];
			any_len = fl[4];
		}
	}
	return any ? unescape_path(any, any_len, buf, cap) : -ENOENT;
}

int intercept_cgroup2_root(char *buf, size_t cap)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	r = readfile_path("/proc/self/mountinfo", 0, INTERCEPT_MOUNTINFO_MAX, &text, &len);
	if (r == -EFBIG)
		r = -E2BIG;
	if (r < 0)
		goto out;
	r = intercept_parse_cgroup2_root(text, len, buf, cap);
out:
	free(text);
	return r;
}

/* ---- listeners ---- */

static int parse_port(const char *s, __u16 *ret)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v > 65535)
		return -EINVAL;
	*ret = htons((uint16_t)v);
	return 0;
}

/* "a.b.c.d:port" → network-order address and port; 0.0.0.0 means this host (127.0.0.1). */
static int parse_listen4(const char *s, __u32 *ret_addr, __u16 *ret_port)
{
	const char *colon = strrchr(s, ':');
	char host[INET_ADDRSTRLEN];
	struct in_addr a;
	__u16 port;

	if (!colon || (size_t)(colon - s) >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	if (inet_pton(AF_INET, host, &a) != 1 || parse_port(colon + 1, &port) < 0)
		return -EINVAL;
	if (a.s_addr == htonl(INADDR_ANY))
		a.s_addr = htonl(INADDR_LOOPBACK);
	*ret_addr = a.s_addr;
	*ret_port = port;
	return 0;
}

/* "[v6]:port" → network-order address and port; [::] means this host ([::1]). An
 * IPv4-mapped address is refused: that is what listen4 is for. */
static int parse_listen6(const char *s, __u32 ret_addr[static 4], __u16 *ret_port)
{
	const char *close_br = strchr(s, ']');
	char host[INET6_ADDRSTRLEN];
	struct in6_addr a;
	__u32 w[4];
	__u16 port;

	if (s[0] != '[' || !close_br || close_br[1] != ':' ||
	    (size_t)(close_br - s - 1) >= sizeof(host))
		return -EINVAL;
	memcpy(host, s + 1, (size_t)(close_br - s - 1));
	host[close_br - s - 1] = '\0';
	if (inet_pton(AF_INET6, host, &a) != 1 || parse_port(close_br + 2, &port) < 0)
		return -EINVAL;
	if (IN6_IS_ADDR_UNSPECIFIED(&a))
		a = in6addr_loopback;
	memcpy(w, &a, sizeof(w));
	if (icpt_is_v4mapped(w))
		return -EINVAL;
	memcpy(ret_addr, w, sizeof(w));
	*ret_port = port;
	return 0;
}

/* ---- open / close ---- */

/* Programs of ours already attached to this cgroup can only belong to a live process
 * (links are never pinned): another vouchd. Two agents on one scope would silently race
 * (the first attached program wins every connect), so refuse instead. */
static int check_not_attached(int cgroup_fd)
{
	__u32 ids[64], cnt = 64, flags = 0;
	int r = 0;

	if (bpf_prog_query(cgroup_fd, BPF_CGROUP_INET4_CONNECT, 0, &flags, ids, &cnt) < 0)
		return 0; /* cannot tell; attaching will report real problems */
	for (__u32 i = 0; i < cnt && i < 64; i++) {
		struct bpf_prog_info info;
		__u32 len = sizeof(info);
		int fd = bpf_prog_get_fd_by_id(ids[i]);

		if (fd < 0)
			continue;
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
		    strncmp(info.name, "icpt_connect4", sizeof(info.name)) == 0)
			r = -EBUSY;
		close(fd);
	}
	return r;
}

static int make_cgroup(const char *path, int *ret_fd, char *err, size_t err_cap)
{
	struct statfs sf;
	int fd;

	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		int e = errno;

		set_err(err, err_cap, "cannot create cgroup %s: %s%s", path, strerror(e),
			e == EACCES || e == EPERM ? " (not root?)" : "");
		return -e;
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		set_err(err, err_cap, "cannot open cgroup %s: %s", path, strerror(e));
		return -e;
	}
	if (fstatfs(fd, &sf) < 0 || sf.f_type != CGROUP2_SUPER_MAGIC) {
		set_err(err, err_cap,
			"%s is not in a cgroup v2 hierarchy (cgroup2 not mounted there?)", path);
		close(fd);
		return -ENOTDIR;
	}
	*ret_fd = fd;
	return 0;
}

static int attach(struct intercept *ic, struct bpf_program *prog, size_t slot, const char *path,
		  char *err, size_t err_cap)
{
	struct bpf_link *l = bpf_program__attach_cgroup(prog, ic->cgroup_fd);

	if (!l) {
		int e = errno ? errno : EINVAL;
		char msg[200];

		libbpf_last(msg, sizeof(msg));
		set_err(err, err_cap, "attaching %s to %s failed: %s%s%s", bpf_program__name(prog),
			path, strerror(e), msg[0] ? ": " : "", msg);
		return -e;
	}
	ic->links[slot] = l;
	return 0;
}

int intercept_open(const struct intercept_opts *opts, struct intercept **ret, char *err,
		   size_t err_cap)
{
	struct intercept *ic = NULL;
	struct icpt_conf c;
	__u32 zero = 0;
	char msg[200];
	int r;

	if (err && err_cap)
		err[0] = '\0';
	if (!opts || !ret || !opts->cgroup_path || !opts->cgroup_path[0]) {
		set_err(err, err_cap, "no cgroup path");
		return -EINVAL;
	}
	memset(&c, 0, sizeof(c));
	if (opts->listen4 && parse_listen4(opts->listen4, &c.proxy4_addr, &c.proxy4_port) < 0) {
		set_err(err, err_cap, "transparent listener %s: want a.b.c.d:port (port 1-65535)",
			opts->listen4);
		return -EINVAL;
	}
	if (opts->listen6 && parse_listen6(opts->listen6, c.proxy6_addr, &c.proxy6_port) < 0) {
		set_err(err, err_cap, "transparent listener %s: want [ipv6]:port (port 1-65535)",
			opts->listen6);
		return -EINVAL;
	}
	if (!c.proxy4_port && !c.proxy6_port) {
		set_err(err, err_cap, "no transparent listener to redirect to");
		return -EINVAL;
	}
	c.agent_tgid = (__u32)opts->agent_tgid;
	c.enabled = 1;
	if (access(INTERCEPT_BTF_PATH, R_OK) < 0) {
		set_err(err, err_cap,
			"no BTF at %s (kernel without CONFIG_DEBUG_INFO_BTF?): "
			"the CO-RE programs cannot be loaded",
			INTERCEPT_BTF_PATH);
		return -ENOTSUP;
	}
	pthread_once(&libbpf_once, libbpf_setup);

	ic = calloc(1, sizeof(*ic));
	if (!ic)
		return -ENOMEM;
	ic->cgroup_fd = -1;
	pthread_mutex_init(&ic->lock, NULL);
	r = make_cgroup(opts->cgroup_path, &ic->cgroup_fd, err, err_cap);
	if (r < 0)
		goto out;
	r = check_not_attached(ic->cgroup_fd);
	if (r < 0) {
		set_err(err, err_cap,
			"%s already has vouch intercept programs attached "
			"(another vouchd serving this scope?)",
			opts->cgroup_path);
		goto out;
	}

	/* libbpf 1.x raises RLIMIT_MEMLOCK itself when the kernel still charges BPF memory
	 * to it (before 5.11); newer kernels charge the memory cgroup instead. */
	ic->skel = intercept_bpf__open();
	if (!ic->skel) {
		r = errno ? -errno : -EINVAL;
		libbpf_last(msg, sizeof(msg));
		set_err(err, err_cap, "opening the BPF object failed: %s%s%s", strerror(-r),
			msg[0] ? ": " : "", msg);
		goto out;
	}
	r = intercept_bpf__load(ic->skel);
	if (r < 0) {
		libbpf_last(msg, sizeof(msg));
		set_err(err, err_cap, "loading the BPF programs failed: %s%s%s%s", strerror(-r),
			r == -EPERM
			    ? " (not root? needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON or root)"
			    : "",
			msg[0] ? ": " : "", msg);
		goto out;
	}
	r = bpf_map__update_elem(ic->skel->maps.conf, &zero, sizeof(zero), &c, sizeof(c), BPF_ANY);
	if (r < 0) {
		set_err(err, err_cap, "configuring the BPF programs failed: %s", strerror(-r));
		goto out;
	}
	r = attach(ic, ic->skel->progs.icpt_connect6, 0, opts->cgroup_path, err, err_cap);
	if (r < 0)
		goto out;
	r = attach(ic, ic->skel->progs.icpt_connect4, 1, opts->cgroup_path, err, err_cap);
	if (r < 0)
		goto out;
	*ret = ic;
	ic = NULL;
	r = 0;
out:
	intercept_close(ic);
	return r;
}

void intercept_close(struct intercept *ic)
{
	if (!ic)
		return;
	for (size_t i = sizeof(ic->links) / sizeof(ic->links[0]); i-- > 0;)
		bpf_link__destroy(ic->links[i]);
	intercept_bpf__destroy(ic->skel);
	if (ic->cgroup_fd >= 0)
		close(ic->cgroup_fd);
	pthread_mutex_destroy(&ic->lock);
	free(ic);
}

/* ---- capture lists ---- */

static int cmp_dst4(const void *a, const void *b) { return memcmp(a, b, sizeof(struct icpt_dst4)); }

static int cmp_dst6(const void *a, const void *b) { return memcmp(a, b, sizeof(struct icpt_dst6)); }

static int cmp_port(const void *a, const void *b) { return memcmp(a, b, sizeof(__u16)); }

/* Sort and drop duplicates; returns the new count. */
static size_t sort_unique(void *keys, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	unsigned char *k = keys;
	size_t o = 0;

	if (n == 0)
		return 0;
	qsort(keys, n, size, cmp);
	for (size_t i = 1; i < n; i++) {
		if (cmp(k + o * size, k + i * size) != 0) {
			o++;
			if (o != i)
				memcpy(k + o * size, k + i * size, size);
		}
	}
	return o + 1;
}

/* Make map fd hold exactly keys[0..n) (sorted, unique): add every key, then delete the
 * keys present before that are not in the set. A failure leaves a superset of the new set
 * (never a still-captured entry missing). Caller holds ic->lock. */
static int map_replace(int fd, const void *keys, size_t n, size_t size, size_t map_cap,
		       int (*cmp)(const void *, const void *))
{
	const unsigned char *k = keys;
	unsigned char *old = NULL;
	size_t n_old = 0;
	__u32 one = 1;
	int r = 0;

	for (size_t i = 0; i < n; i++) {
		r = bpf_map_update_elem(fd, k + i * size, &one, BPF_ANY);
		if (r < 0)
			goto out;
	}
	old = calloc(map_cap + 1, size);
	if (!old) {
		r = -ENOMEM;
		goto out;
	}
	/* collect first, delete after: deleting during get_next_key restarts the walk */
	for (n_old = 0; n_old < map_cap; n_old++) {
		r = bpf_map_get_next_key(fd, n_old ? old + (n_old - 1) * size : NULL,
					 old + n_old * size);
		if (r == -ENOENT)
			break;
		if (r < 0)
			goto out;
	}
	r = 0;
	for (size_t j = 0; j < n_old; j++) {
		const unsigned char *key = old + j * size;
		int d;

		if (n && bsearch(key, keys, n, size, cmp))
			continue;
		d = bpf_map_delete_elem(fd, key);
		if (d < 0 && d != -ENOENT && r == 0)
			r = d;
	}
out:
	free(old);
	return r;
}

int intercept_set_dests(struct intercept *ic, const struct intercept_dest *dests, size_t n)
{
	struct icpt_dst4 *k4 = NULL;
	struct icpt_dst6 *k6 = NULL;
	size_t n4 = 0, n6 = 0;
	int r;

	if (!ic || (n && !dests))
		return -EINVAL;
	if (n > 2 * (size_t)ICPT_MAX_DESTS)
		return -E2BIG;
	k4 = calloc(n + 1, sizeof(*k4));
	k6 = calloc(n + 1, sizeof(*k6));
	if (!k4 || !k6) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct intercept_dest *d = &dests[i];
		__u32 a[4];

		if (d->port == 0) {
			r = -EINVAL;
			goto out;
		}
		if (d->family == AF_INET) {
			k4[n4].addr = d->addr.v4.s_addr;
			k4[n4++].port = htons(d->port);
		} else if (d->family == AF_INET6) {
			memcpy(a, &d->addr.v6, sizeof(a));
			if (icpt_is_v4mapped(a)) { /* the hook looks these up in dst4 */
				k4[n4].addr = a[3];
				k4[n4++].port = htons(d->port);
			} else {
				memcpy(k6[n6].addr, a, sizeof(a));
				k6[n6++].port = htons(d->port);
			}
		} else {
			r = -EAFNOSUPPORT;
			goto out;
		}
	}
	n4 = sort_unique(k4, n4, sizeof(*k4), cmp_dst4);
	n6 = sort_unique(k6, n6, sizeof(*k6), cmp_dst6);
	if (n4 > ICPT_MAX_DESTS || n6 > ICPT_MAX_DESTS) {
		r = -E2BIG;
		goto out;
	}
	pthread_mutex_lock(&ic->lock);
	r = map_replace(bpf_map__fd(ic->skel->maps.dst4), k4, n4, sizeof(*k4),
			bpf_map__max_entries(ic->skel->maps.dst4), cmp_dst4);
	if (r == 0)
		r = map_replace(bpf_map__fd(ic->skel->maps.dst6), k6, n6, sizeof(*k6),
				bpf_map__max_entries(ic->skel->maps.dst6), cmp_dst6);
	pthread_mutex_unlock(&ic->lock);
out:
	free(k4);
	free(k6);
	return r;
}

int intercept_set_ports(struct intercept *ic, const uint16_t *ports, size_t n)
{
	__u16 *k = NULL;
	int r;

	if (!ic || (n && !ports))
		return -EINVAL;
	if (n > 2 * (size_t)ICPT_MAX_PORTS)
		return -E2BIG;
	k = calloc(n + 1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (ports[i] == 0) {
			r = -EINVAL;
			goto out;
		}
		k[i] = htons(ports[i]);
	}
	n = sort_unique(k, n, sizeof(*k), cmp_port);
	if (n > ICPT_MAX_PORTS) {
		r = -E2BIG;
		goto out;
	}
	pthread_mutex_lock(&ic->lock);
	r = map_replace(bpf_map__fd(ic->skel->maps.ports), k, n, sizeof(*k),
			bpf_map__max_entries(ic->skel->maps.ports), cmp_port);
	pthread_mutex_unlock(&ic->lock);
out:
	free(k);
	return r;
}

int intercept_lookup(struct intercept *ic, const struct sockaddr *peer,
		     const struct sockaddr *local, struct icpt_orig *ret)
{
	struct icpt_orig o;
	uint64_t cookie;
	int r;

	if (!ic || !ret || !peer || !local)
		return -EINVAL;
	if (peer->sa_family != AF_INET && peer->sa_family != AF_INET6)
		return -EAFNOSUPPORT;
	r = attest_tcp_peer_cookie(peer, local, &cookie);
	if (r < 0)
		return r == -ENOENT ? -ENOENT : r;
	r = bpf_map_lookup_and_delete_elem(bpf_map__fd(ic->skel->maps.pending), &cookie, &o);
	if (r < 0)
		return r == -ENOENT ? -ENOENT : r;
	if (o.cookie != cookie)
		return -ENOENT; /* not possible: the map is keyed by it */
	*ret = o;
	return 0;
}
