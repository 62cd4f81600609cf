/* Unit tests for src/common (base64, secret, net) and src/audit. */
#include "audit/audit.h"
#include "common/base64.h"
#include "common/fmt.h"
#include "common/net.h"
#include "common/readfile.h"
#include "common/secret.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_base64(void)
{
	/* RFC 4648 §10 vectors, url alphabet without padding */
	static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	static const char *std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	char out[64];
	unsigned char dec[64];
	bool all = true;

	for (size_t i = 0; i < 7; i++) {
		long n = base64url_encode(in[i], strlen(in[i]), out, sizeof(out));
		all &= n == (long)strlen(url[i]) && strcmp(out, url[i]) == 0;
		n = base64_encode(in[i], strlen(in[i]), out, sizeof(out));
		all &= n == (long)strlen(std[i]) && strcmp(out, std[i]) == 0;
		n = base64url_decode(url[i], strlen(url[i]), dec, sizeof(dec));
		all &= n == (long)strlen(in[i]) && memcmp(dec, in[i], (size_t)n) == 0;
	}
	ok(all, "base64/base64url RFC 4648 vectors encode and decode");
	unsigned char bin[256];
	for (int i = 0; i < 256; i++)
		bin[i] = (unsigned char)i;
	char big[400];
	long n = base64url_encode(bin, sizeof(bin), big, sizeof(big));
	unsigned char back[256];
	ok(n > 0 && base64url_decode(big, (size_t)n, back, sizeof(back)) == 256 &&
	       memcmp(back, bin, 256) == 0,
	   "base64url round-trips all byte values (- and _ alphabet)");
	ok(base64url_encode("foo", 3, out, 4) == -ENOSPC, "encode refuses a short output buffer");
	ok(base64url_decode("Zm9v", 4, dec, 2) == -ENOSPC, "decode refuses a short output buffer");
	ok(base64url_decode("Zm9v=", 5, dec, sizeof(dec)) == -EINVAL, "decode rejects padding");
	ok(base64url_decode("Zm+v", 4, dec, sizeof(dec)) == -EINVAL,
	   "decode rejects '+' (std alphabet)");
	ok(base64url_decode("Z", 1, dec, sizeof(dec)) == -EINVAL,
	   "decode rejects impossible length");
	ok(base64url_decode("Zh", 2, dec, sizeof(dec)) == -EINVAL,
	   "decode rejects non-canonical trailing bits");
	ok(base64url_decode("Zm 9", 4, dec, sizeof(dec)) == -EINVAL, "decode rejects whitespace");
}

#if defined(__x86_64__)
__attribute__((target("avx512f"), noinline)) static void test_load_zmm31(const unsigned char p[64])
{
	__asm__ volatile("vmovdqu64 %0, %%zmm31" : : "m"(*(const unsigned char(*)[64])p) : "xmm31");
}

__attribute__((target("avx512f"), noinline)) static void test_store_zmm31(unsigned char p[64])
{
	__asm__ volatile("vmovdqu64 %%zmm31, %0" : "=m"(*(unsigned char(*)[64])p));
}
#endif

static void test_secret(void)
{
	struct secret *a = secret_from("sk-ant-oat01-test", 17),
		      *b = secret_from("sk-ant-oat01-test", 17);
	struct secret *c = secret_from("sk-ant-oat01-tesT", 17), *d = secret_dup(a);
	char fa[17], fb[17], fc[17];

	ok(a && b && c && d, "secrets allocate");
	ok(a->data[a->len] == '\0', "secret data is NUL-terminated");
	ok(secret_eq(a, b) && secret_eq(a, d) && !secret_eq(a, c), "constant-time equality");
	ok(!secret_eq(a, NULL) && !secret_eq(NULL, NULL), "NULL is never equal");
	struct secret *shorter = secret_from("sk-ant", 6);
	ok(!secret_eq(a, shorter), "different lengths differ");
	secret_fingerprint(a, fa);
	secret_fingerprint(b, fb);
	secret_fingerprint(c, fc);
	ok(strlen(fa) == 16 && strcmp(fa, fb) == 0 && strcmp(fa, fc) != 0,
	   "fingerprints are 16 hex digits, stable and distinct");
	ok(strstr(fa, "sk-ant") == NULL, "fingerprint does not contain the secret");
	/* The mapping holding the secret must be excluded from core dumps: look it up in smaps. */
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in_map = false, dd = false;
	unsigned long lo, hi, addr = (unsigned long)a->data;
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			in_map = addr >= lo && addr < hi;
		else if (in_map && strncmp(line, "VmFlags:", 8) == 0)
			dd = strstr(line, " dd") != NULL;
	}
	if (f)
		fclose(f);
	ok(dd, "secret pages carry MADV_DONTDUMP (VmFlags dd)");
	secret_free(a);
	secret_free(b);
	secret_free(c);
	secret_free(d);
	secret_free(shorter);
	secret_free(NULL);
	ok(1, "secret_free(NULL) is a no-op");
	struct secret *big = secret_new(100000);
	ok(big && big->cap >= 100000, "large secret spans pages");
	secret_free(big);
	ok(secret_new((size_t)-1) == NULL, "absurd size is refused");
}

/* Whether every byte of p[0..n) is zero. */
static bool all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* VmFlags of the mapping holding addr ("" if none). */
static void vmflags_of(const void *addr, char *ret, size_t cap)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	unsigned long lo, hi, a = (unsigned long)addr;
	bool in_map = false;

	ret[0] = '\0';
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			in_map = a >= lo && a < hi;
		else if (in_map && strncmp(line, "VmFlags:", 8) == 0)
			snprintf(ret, cap, "%s", line + 8);
	}
	if (f)
		fclose(f);
}

/* How a secret dies: a one-page secret goes back to the pool wiped (the next secret_new
 * gets that very page, all zero); a larger one is unmapped (mincore says ENOMEM). */
static void test_secret_death(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	struct secret *s = secret_new(64), *again;
	unsigned char vec[32];
	char flags[512];
	void *page;

	ok(s != NULL, "a one-page secret");
	vmflags_of(s->data, flags, sizeof(flags));
	ok(strstr(flags, " dd") != NULL, "its page is MADV_DONTDUMP");
#if defined(__SANITIZE_ADDRESS__)
	printf("# ASan intercepts mlock() as a no-op: the lock is not checked\n");
#else
	if (geteuid() == 0)
		ok(strstr(flags, " lo") != NULL, "its page is mlock()ed (root: no RLIMIT_MEMLOCK)");
	else
		skip("mlock is best effort without root (RLIMIT_MEMLOCK)");
#endif
	memset(s->data, 'K', s->cap);
	s->len = s->cap;
	page = s;
	secret_free(s);
	again = secret_new(64);
	ok(again == page, "the freed page is reused from the pool");
	ok(again && again->len == 0 && all_zero(again->data, again->cap + 1),
	   "and every byte of it was wiped");
	secret_free(again);

	s = secret_new(3 * (size_t)pg);
	ok(s != NULL, "a multi-page secret");
	memset(s->data, 'K', s->cap);
	page = s;
	ok(mincore(page, (size_t)pg, vec) == 0, "its pages are mapped while it lives");
	secret_free(s);
	errno = 0;
	ok(mincore(page, (size_t)pg, vec) < 0 && errno == ENOMEM,
	   "secret_free unmaps a multi-page secret");

	/* Pool overflow: more one-page secrets than the pool keeps are unmapped. */
	enum { N = 80 };
	struct secret *many[N];
	void *addr[N];
	int unmapped = 0;
	for (int i = 0; i < N; i++) {
		many[i] = secret_new(16);
		addr[i] = many[i];
	}
	for (int i = 0; i < N; i++)
		secret_free(many[i]);
	for (int i = 0; i < N; i++)
		if (mincore(addr[i], (size_t)pg, vec) < 0 && errno == ENOMEM)
			unmapped++;
	ok(unmapped >= N - 64, "beyond the pool, freed pages are unmapped (%d of %d)", unmapped, N);
}

/* secret_eq: equal only for equal bytes and lengths, wherever the difference is. */
static void test_secret_eq(void)
{
	unsigned char buf[300];
	struct secret *a, *b;
	bool all = true;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 + 1);
	a = secret_from(buf, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf) && a; i++) {
		buf[i] ^= 0x01;
		b = secret_from(buf, sizeof(buf));
		all = all && b && !secret_eq(a, b) && !secret_eq(b, a);
		buf[i] ^= 0x01;
		secret_free(b);
	}
	ok(a && all, "a one-bit difference at any position is unequal");
	b = secret_from(buf, sizeof(buf));
	ok(secret_eq(a, b), "equal bytes are equal");
	secret_free(b);
	b = secret_from(buf, sizeof(buf) - 1);
	ok(!secret_eq(a, b) && !secret_eq(b, a), "a prefix is not equal");
	secret_free(b);
	b = secret_from("", 0);
	struct secret *c = secret_from("", 0);
	ok(b && c && secret_eq(b, c), "two empty secrets are equal");
	secret_free(b);
	secret_free(c);
	secret_free(a);
}

/* secret_wipe and secret_heap_free; secret_scrub_cpu leaves no byte in the vector
 * registers (checked on xmm15, and on zmm31 where AVX-512 exists). */
static void test_secret_wipe(void)
{
	char buf[100];
	char *h;

	memset(buf, 'K', sizeof(buf));
	secret_wipe(buf, sizeof(buf));
	ok(all_zero(buf, sizeof(buf)), "secret_wipe zeroes the buffer");
	secret_wipe(NULL, 0);
	secret_heap_free(NULL);
	h = malloc(100);
	ok(h != NULL, "a heap block");
	if (h)
		memset(h, 'K', 100);
	secret_heap_free(h);
	ok(1, "secret_heap_free(NULL) is a no-op; a heap block is freed");
#if defined(__x86_64__)
	unsigned char pat[64], got[64];

	memset(pat, 0xa5, sizeof(pat));
	memset(got, 0xff, sizeof(got));
	__asm__ volatile("movdqu %0, %%xmm15" : : "m"(*(unsigned char(*)[16])pat) : "xmm15");
	secret_scrub_cpu();
	__asm__ volatile("movdqu %%xmm15, %0" : "=m"(*(unsigned char(*)[16])got));
	ok(all_zero(got, 16), "secret_scrub_cpu clears xmm15");
	if (__builtin_cpu_supports("avx512f")) {
		memset(got, 0xff, sizeof(got));
		test_load_zmm31(pat);
		secret_scrub_cpu();
		test_store_zmm31(got);
		ok(all_zero(got, 64), "secret_scrub_cpu clears zmm31 (AVX-512)");
	} else {
		printf("# no AVX-512 on this CPU: zmm16-31 do not exist\n");
	}
#else
	printf("# the vector-register scrub is x86-64 only\n");
#endif
}

static void test_net(void)
{
	ok(net_listen_tcp("127.0.0.1", 1) == -EINVAL, "listen address without port is refused");
	ok(net_listen_tcp("127.0.0.1:70000", 1) == -EINVAL, "port out of range is refused");
	ok(net_listen_tcp("example.com:80", 1) == -EINVAL,
	   "host names are refused (IP literals only)");
	ok(net_listen_tcp("[::1:80", 1) == -EINVAL, "unterminated IPv6 literal is refused");
	int fd = net_listen_tcp("127.0.0.1:0", 1);
	ok(fd >= 0, "binds 127.0.0.1:0");
	if (fd >= 0)
		close(fd);
	fd = net_listen_tcp("[::1]:0", 1);
	ok(fd >= 0 || fd == -EADDRNOTAVAIL, "binds [::1]:0 (or IPv6 is unavailable)");
	if (fd >= 0)
		close(fd);
}

static int n_refused;
static void count_refusal(int fd, void *ctx)
{
	n_refused++;
	ok(fd >= 0 && ctx == (void *)count_refusal, "refuse gets the connection and its context");
}

/* Out of descriptors, net_accept takes the pending connection with the reserve and closes
 * it (the listener is no longer readable: no spin), then takes the reserve back. */
static void test_net_accept(void)
{
	struct sockaddr_in a = {0};
	socklen_t al = sizeof(a);
	struct rlimit old, low;
	int lfd = net_listen_tcp("127.0.0.1:0", 8), reserve = net_reserve_fd(), cfd, fd, r;
	static int fill[512];
	int n_fill = 0;
	char b;

	ok(lfd >= 0 && reserve >= 0, "listener and reserve");
	getsockname(lfd, (struct sockaddr *)&a, &al);
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ok(connect(cfd, (struct sockaddr *)&a, al) == 0, "client connects");
	fd = net_accept(lfd, SOCK_CLOEXEC, &reserve, count_refusal, (void *)count_refusal);
	ok(fd >= 0 && n_refused == 0, "an ordinary accept");
	close(fd);
	close(cfd);

	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ok(connect(cfd, (struct sockaddr *)&a, al) == 0, "a second client connects");
	/* use up every descriptor under a low limit */
	getrlimit(RLIMIT_NOFILE, &old);
	low = old;
	low.rlim_cur = 256;
	ok(setrlimit(RLIMIT_NOFILE, &low) == 0, "descriptor limit lowered");
	while (n_fill < 512 && (fill[n_fill] = net_reserve_fd()) >= 0)
		n_fill++;
	ok(n_fill < 512 && errno == EMFILE, "every descriptor in use");
	r = net_accept(lfd, SOCK_CLOEXEC, &reserve, count_refusal, (void *)count_refusal);
	ok(r == -EMFILE && n_refused == 1, "out of descriptors: -EMFILE, the client refused (%d)",
	   r);
	ok(reserve >= 0, "the reserve is taken back");
	ok(read(cfd, &b, 1) == 0, "the refused client sees the connection closed");
	struct pollfd pfd = {.fd = lfd, .events = POLLIN};
	ok(poll(&pfd, 1, 0) == 0, "nothing left pending: a poll loop would not spin");
	close(cfd);

	/* The reserve lost (another thread took its slot): the next slot that frees up goes
	 * back to the reserve, not to a pending connection, and that connection is refused. */
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ok(cfd >= 0 || errno == EMFILE, "a third client socket");
	if (cfd < 0) { /* (the limit holds for us as well: make room for the client first) */
		close(fill[--n_fill]);
		cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	}
	ok(connect(cfd, (struct sockaddr *)&a, al) == 0, "the third client connects");
	close(reserve);
	reserve = -1;
	while ((fill[n_fill] = net_reserve_fd()) >= 0) /* the reserve's slot, taken elsewhere */
		n_fill++;
	r = net_accept(lfd, SOCK_CLOEXEC, &reserve, count_refusal, (void *)count_refusal);
	ok(r == -EMFILE && reserve < 0 && n_refused == 1,
	   "no reserve and no room: -EMFILE, nobody refused yet");
	close(fill[--n_fill]); /* one slot frees up */
	r = net_accept(lfd, SOCK_CLOEXEC, &reserve, count_refusal, (void *)count_refusal);
	ok(r == -EMFILE && reserve >= 0 && n_refused == 2,
	   "the freed slot becomes the reserve again and the client is refused (%d)", r);
	ok(read(cfd, &b, 1) == 0, "the refused client sees the connection closed");
	ok(poll(&pfd, 1, 0) == 0, "nothing left pending");
	while (n_fill)
		close(fill[--n_fill]);
	setrlimit(RLIMIT_NOFILE, &old);
	close(cfd);
	close(reserve);
	close(lfd);
}

/* The Host check of the loopback listeners (metrics, dashboard): DNS rebinding. */
static void test_host_is_loopback(void)
{
	static const struct {
		const char *host, *also;
		bool want;
	} cases[] = {
	    {"localhost", NULL, true},
	    {"LocalHost:9464", NULL, true},
	    {"127.0.0.1", NULL, true},
	    {"127.9.8.7:80", NULL, true},
	    {"[::1]", NULL, true},
	    {"[::1]:9464", NULL, true},
	    {"10.0.0.1:9464", "10.0.0.1", true},
	    {"10.0.0.1:9464", NULL, false},
	    {NULL, NULL, false},
	    {"", NULL, false},
	    {":80", NULL, false},
	    {"127.0.0.1.attacker.example", NULL, false},
	    {"localhost.attacker.example", NULL, false},
	    {"127.1", NULL, false},
	    {"128.0.0.1", NULL, false},
	    {"127.0.0.256", NULL, false},
	    {"127.0.0.01111", NULL, false},
	    {"[::2]", NULL, false},
	    {"[::1", NULL, false},
	    {"localhost:", NULL, false},
	    {"localhost:123456", NULL, false},
	    {"localhost:8x", NULL, false},
	    {"127.0.0.1 ", NULL, false},
	    {"127..0.1", NULL, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ok(net_host_is_loopback(cases[i].host, cases[i].also) == cases[i].want,
		   "Host \"%s\" (also %s): %s", cases[i].host ? cases[i].host : "(none)",
		   cases[i].also ? cases[i].also : "-", cases[i].want ? "loopback" : "refused");
	char longh[400];
	memset(longh, '1', sizeof(longh) - 1);
	longh[sizeof(longh) - 1] = '\0';
	ok(!net_host_is_loopback(longh, NULL), "an oversize Host is refused");
}

static void test_fmt(void)
{
	char b[FMT_U64_MAX], j[8];

	ok(fmt_u64(b, 0) == 1 && strcmp(b, "0") == 0, "fmt_u64 0");
	ok(fmt_u64(b, UINT64_MAX) == 20 && strcmp(b, "18446744073709551615") == 0,
	   "fmt_u64 the largest (%s)", b);
	ok(fmt_i64(b, INT64_MIN) == 20 && strcmp(b, "-9223372036854775808") == 0,
	   "fmt_i64 the smallest (%s)", b);
	ok(fmt_i64(b, -1) == 2 && strcmp(b, "-1") == 0 && fmt_i64(b, 443) == 3 &&
	       strcmp(b, "443") == 0,
	   "fmt_i64 -1 and 443");
	ok(fmt_join(j, sizeof(j), 3, (const char *[]){"ab", NULL, "cd"}) && strcmp(j, "abcd") == 0,
	   "fmt_join joins, a NULL part is empty");
	ok(fmt_join(j, sizeof(j), 3, (const char *[]){"abc", "def", "g"}) &&
	       strcmp(j, "abcdefg") == 0,
	   "fmt_join fills the buffer exactly");
	ok(!fmt_join(j, sizeof(j), 3, (const char *[]){"abc", "defgh", "ij"}) &&
	       strcmp(j, "abcdefg") == 0,
	   "fmt_join cuts to cap - 1 and says so (%s)", j);
}

static void test_audit(void)
{
	char path[] = "/tmp/vouch-audit-XXXXXX";
	int fd = mkstemp(path);
	struct audit *a = NULL;
	char buf[4096];
	ssize_t n;

	close(fd);
	unlink(path);
	ok(audit_open(path, &a) == 0, "audit log opens");
	audit_emit(a, &(struct audit_rec){.event = "inject",
					  .workload_id = "spiffe://td/a",
					  .pid = 42,
					  .path = "/v1/messages\n{\"forged\":true}",
					  .fingerprint = "0123456789abcdef",
					  .status = 200,
					  .expires_in = -1});
	audit_emit(a,
		   &(struct audit_rec){.event = "deny", .reason = "no binding", .expires_in = -1});
	audit_close(a);
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	struct stat st;
	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "audit file is created 0600");
	char *nl = strchr(buf, '\n');
	ok(nl && strchr(nl + 1, '\n') && *(strchr(nl + 1, '\n') + 1) == '\0',
	   "two records are exactly two lines (a newline in a field cannot forge a record)");
	json_error_t je;
	json_t *r1 = json_loadb(buf, (size_t)(nl - buf), 0, &je);
	ok(json_is_object(r1) &&
	       strcmp(json_string_value(json_object_get(r1, "event")), "inject") == 0 &&
	       json_integer_value(json_object_get(r1, "pid")) == 42 &&
	       strcmp(json_string_value(json_object_get(r1, "token_fp")), "0123456789abcdef") ==
		   0 &&
	       json_object_get(r1, "ts") != NULL,
	   "record is JSON with ts, event, pid and token fingerprint");
	json_decref(r1);
	unlink(path);
}

/* Every record is one line of valid JSON whatever the fields hold. */
static void test_audit_hostile(void)
{
	char path[] = "/tmp/vouch-audit-XXXXXX";
	int fd = mkstemp(path);
	struct audit *a = NULL;
	static char buf[1 << 17], big[6000], plain[6000];
	const char *bad_utf8 = "/v1/\xff\xc0\xafx\xed\xa0\x80y\xf4\x90\x80\x80z\xe2\x82";
	ssize_t n;

	close(fd);
	unlink(path);
	memset(big, '\x01', sizeof(big) - 1);  /* each byte escapes to 6 */
	memset(plain, 'a', sizeof(plain) - 1); /* copied as a run */
	memcpy(plain + 100, "\"\\\n", 3);
	ok(audit_open(path, &a) == 0, "audit log opens");
	audit_emit(a, &(struct audit_rec){
			  .event = "inject", .path = "q\"\\\t\r\x1f\x7f/é€😀", .expires_in = -1});
	audit_emit(a, &(struct audit_rec){.event = "inject", .path = bad_utf8, .expires_in = -1});
	audit_emit(a, &(struct audit_rec){.event = "deny",
					  .workload_id = big,
					  .exe = big,
					  .destination = big,
					  .source = big,
					  .binding = big,
					  .path = big,
					  .reason = big,
					  .status = 403,
					  .expires_in = -1});
	audit_emit(a, &(struct audit_rec){.event = "exchange",
					  .workload_id = plain,
					  .path = "/v1/messages?beta=true",
					  .status = -7,
					  .elapsed_us = INT64_MAX,
					  .expires_in = -1});
	audit_close(a);
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	unlink(path);

	json_t *r[4] = {NULL, NULL, NULL, NULL};
	char *line = buf;
	int lines = 0;
	for (char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, lines++)
		if (lines < 4)
			r[lines] = json_loadb(line, (size_t)(nl - line), 0, NULL);
	ok(lines == 4 && *line == '\0', "four records, four lines (%d)", lines);
	ok(r[0] && strcmp(json_string_value(json_object_get(r[0], "path")),
			  "q\"\\\t\r\x1f\x7f/é€😀") == 0,
	   "quotes, backslashes, control bytes and UTF-8 round-trip exactly");
	ok(r[1] &&
	       strcmp(
		   json_string_value(json_object_get(r[1], "path")),
		   "/v1/"
		   "\uFFFD\uFFFD\uFFFDx\uFFFD\uFFFD\uFFFDy\uFFFD\uFFFD\uFFFD\uFFFDz\uFFFD\uFFFD") ==
		   0,
	   "invalid UTF-8 (stray, overlong, surrogate, > U+10FFFF, truncated) becomes U+FFFD "
	   "per byte: %s",
	   r[1] ? json_string_value(json_object_get(r[1], "path")) : "(not JSON)");
	ok(r[2] && json_integer_value(json_object_get(r[2], "status")) == 403 &&
	       strcmp(json_string_value(json_object_get(r[2], "event")), "deny") == 0,
	   "an oversize record is still valid JSON with its event and status");
	const char *w = r[2] ? json_string_value(json_object_get(r[2], "workload")) : NULL;
	ok(w && strlen(w) < sizeof(big) - 1 && strstr(w, "…"),
	   "an oversize field is cut and marked (%zu bytes)", w ? strlen(w) : 0);
	w = r[3] ? json_string_value(json_object_get(r[3], "workload")) : NULL;
	ok(w && strlen(w) > 600 && strlen(w) < sizeof(plain) - 1 && strncmp(w, plain, 100) == 0 &&
	       strncmp(w + 100, "\"\\\n", 3) == 0 && strncmp(w + 103, plain + 103, 400) == 0 &&
	       strcmp(w + strlen(w) - 3, "…") == 0,
	   "a long printable field keeps its bytes and escapes, cut and marked (%zu bytes)",
	   w ? strlen(w) : 0);
	ok(r[3] &&
	       strcmp(json_string_value(json_object_get(r[3], "path")), "/v1/messages?beta=true") ==
		   0 &&
	       json_integer_value(json_object_get(r[3], "status")) == -7 &&
	       json_integer_value(json_object_get(r[3], "elapsed_us")) == INT64_MAX,
	   "numbers: negative and the largest (status %lld, elapsed_us %lld)",
	   r[3] ? (long long)json_integer_value(json_object_get(r[3], "status")) : 0,
	   r[3] ? (long long)json_integer_value(json_object_get(r[3], "elapsed_us")) : 0);
	for (int i = 0; i < 4; i++)
		json_decref(r[i]);
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Lines held by an event loop thread (audit_hold) reach the file at audit_flush, whole,
 * in order; a full batch is written out by itself; other threads are not held. */
static void *emit_other_thread(void *arg)
{
	audit_emit(arg, &(struct audit_rec){.event = "deny", .reason = "other", .expires_in = -1});
	return NULL;
}

static void test_audit_batch(void)
{
	char path[] = "/tmp/vouch-audit-XXXXXX";
	int fd = mkstemp(path);
	struct audit *a = NULL;
	static char buf[1 << 20];
	pthread_t th;
	ssize_t n;
	off_t sz;

	close(fd);
	unlink(path);
	ok(audit_open(path, &a) == 0, "audit log opens");
	audit_hold(a);
	audit_emit(a, &(struct audit_rec){.event = "inject", .pid = 1, .expires_in = -1});
	audit_emit(a, &(struct audit_rec){.event = "inject", .pid = 2, .expires_in = -1});
	ok(file_size(path) == 0, "held records are not written before the flush");
	pthread_create(&th, NULL, emit_other_thread, a);
	pthread_join(th, NULL);
	sz = file_size(path);
	ok(sz > 0, "another thread's record is written at once (%lld bytes)", (long long)sz);
	audit_flush();
	ok(file_size(path) > sz, "audit_flush writes the held records");
	/* more than one 64 KB batch: nothing is lost, every line whole */
	for (int i = 0; i < 1000; i++)
		audit_emit(
		    a, &(struct audit_rec){.event = "inject",
					   .pid = 1000 + i,
					   .path = "/v1/messages/padding-to-make-the-line-longer",
					   .expires_in = -1});
	ok(file_size(path) > sz + 65536 / 2, "a full batch is written without waiting for a flush");
	audit_release();
	audit_emit(a, &(struct audit_rec){.event = "deny", .pid = 9, .expires_in = -1});
	audit_close(a);
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	unlink(path);
	buf[n > 0 ? n : 0] = '\0';
	int lines = 0, bad = 0, in_order = 1;
	long last = 999;
	char *line = buf;
	for (char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, lines++) {
		json_t *r = json_loadb(line, (size_t)(nl - line), 0, NULL);
		long pid = r ? (long)json_integer_value(json_object_get(r, "pid")) : -1;
		if (!r)
			bad++;
		if (pid >= 1000) {
			if (pid != last + 1)
				in_order = 0;
			last = pid;
		}
		json_decref(r);
	}
	ok(lines == 1004 && bad == 0 && *line == '\0',
	   "1004 records, each one whole JSON line (%d lines, %d bad)", lines, bad);
	ok(in_order && last == 1999, "held records keep their order, none lost (last %ld)", last);
}

struct recent_seen {
	int n, bad;
	long first_pid, last_pid;
	size_t longest;
};

static void recent_cb(const char *line, void *arg)
{
	struct recent_seen *rs = arg;
	json_t *r = json_loads(line, 0, NULL);
	long pid = r ? (long)json_integer_value(json_object_get(r, "pid")) : -1;

	if (!r || strcmp(json_string_value(json_object_get(r, "event")) ?: "", "deny") != 0)
		rs->bad++;
	if (rs->n++ == 0)
		rs->first_pid = pid;
	rs->last_pid = pid;
	if (strlen(line) > rs->longest)
		rs->longest = strlen(line);
	json_decref(r);
}

static void test_audit_recent(void)
{
	struct audit *a = NULL;
	struct recent_seen rs = {0};
	char big[4096];

	ok(audit_open("/dev/null", &a) == 0, "audit log on /dev/null opens");
	ok(audit_recent(a, recent_cb, &rs) == 0 && rs.n == 0, "no denials yet: the ring is empty");
	memset(big, 'p', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[10] = '"', big[11] = '\n', big[12] = (char)0xff; /* hostile bytes in a field */
	for (int i = 1; i <= 100; i++) {
		audit_emit(
		    a, &(struct audit_rec){.event = "inject", .pid = 100000 + i, .expires_in = -1});
		audit_emit(a, &(struct audit_rec){.event = "deny",
						  .pid = i,
						  .path = big,
						  .reason = big,
						  .workload_id = big,
						  .exe = big,
						  .destination = big,
						  .method = big,
						  .source = big,
						  .binding = big,
						  .audience = big,
						  .jti = big,
						  .fingerprint = big,
						  .expires_in = -1});
	}
	ok(audit_recent(a, recent_cb, &rs) == AUDIT_RECENT && rs.n == AUDIT_RECENT,
	   "the ring holds the last %d denials (%d)", AUDIT_RECENT, rs.n);
	ok(rs.bad == 0, "each is one whole JSON object of a deny record, whatever its fields hold");
	ok(rs.first_pid == 100 && rs.last_pid == 100 - AUDIT_RECENT + 1,
	   "newest first (%ld … %ld); inject records are not kept", rs.first_pid, rs.last_pid);
	ok(rs.longest < 2560, "fields are cut shorter than in the log (%zu bytes)", rs.longest);
	audit_close(a);
}

static void test_readfile(void)
{
	char path[] = "/tmp/vouch-readfile-XXXXXX";
	int fd = mkstemp(path);
	static char big[100000];
	char *buf = NULL;
	size_t len = 0;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	ok(fd >= 0 && write(fd, big, sizeof(big)) == (ssize_t)sizeof(big), "temp file written");
	close(fd);
	ok(readfile_path(path, 0, sizeof(big), &buf, &len) == 0 && len == sizeof(big) &&
	       memcmp(buf, big, len) == 0 && buf[len] == '\0',
	   "a file of exactly max bytes is read whole (buffer grows past 4 KiB), NUL-terminated");
	free(buf);
	buf = NULL;
	ok(readfile_path(path, 0, sizeof(big) - 1, &buf, &len) == -EFBIG && buf == NULL,
	   "one byte over max is -EFBIG and returns nothing");
	fd = open(path, O_RDONLY);
	ok(readfile_fd(fd, sizeof(big) - 1, &buf, &len) == -EFBIG && buf == NULL,
	   "readfile_fd also stops one byte past max (no size precheck needed)");
	close(fd);
	ok(readfile_path("/tmp", 0, 10, &buf, &len) == -EINVAL, "a directory is refused");
	ok(readfile_path("/nonexistent/vouch", 0, 10, &buf, &len) == -ENOENT,
	   "missing file: -ENOENT");
	ok(readfile_path("/proc/self/stat", 0, 4096, &buf, &len) == 0 && len > 0 && len < 4096,
	   "a /proc file (st_size 0) is read to EOF");
	free(buf);
	buf = NULL;
	unlink(path);
	ok(readfile_path("/proc/self/stat", 0, (size_t)-1, &buf, &len) == -EINVAL,
	   "an absurd max is refused instead of overflowing max + 1");
	fd = open("/dev/null", O_RDONLY);
	ok(readfile_fd(fd, 0, &buf, &len) == 0 && len == 0 && buf[0] == '\0', "empty input, max 0");
	free(buf);
	close(fd);
}

int main(void)
{
	test_base64();
	test_secret();
	test_secret_death();
	test_secret_eq();
	test_secret_wipe();
	test_net();
	test_net_accept();
	test_host_is_loopback();
	test_fmt();
	test_audit();
	test_audit_hostile();
	test_audit_batch();
	test_audit_recent();
	test_readfile();
	return tap_done();
}
