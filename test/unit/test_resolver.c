/* Unit tests for src/agent/resolver.c: Service addresses to captured destinations
 * (pure helpers), real resolution of /etc/hosts names, and the thread with a fake apply
 * function. The agent's objects are not in libvouch.a: the module is compiled in here.
 * Waits are bounded (10 s) and never asserted on. */
#include "agent/resolver.c"

#include "config/resources.h"
#include "tap.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/vouch-test-resolver.XXXXXX";

static void write_file(const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static struct intercept_dest v4(const char *a, uint16_t port)
{
	struct intercept_dest d = {.family = AF_INET, .port = port};

	inet_pton(AF_INET, a, &d.addr.v4);
	return d;
}

static struct intercept_dest v6(const char *a, uint16_t port)
{
	struct intercept_dest d = {.family = AF_INET6, .port = port};

	inet_pton(AF_INET6, a, &d.addr.v6);
	return d;
}

static bool same(struct intercept_dest a, struct intercept_dest b)
{
	return resolver_dest_cmp(&a, &b) == 0;
}

static void test_literal(void)
{
	struct intercept_dest d;
	char big[200];

	ok(resolver_literal("127.1.2.3", 443, &d) == 1 && same(d, v4("127.1.2.3", 443)),
	   "IPv4 literal");
	ok(resolver_literal("::1", 8443, &d) == 1 && same(d, v6("::1", 8443)), "IPv6 literal");
	ok(resolver_literal("[::1]", 1, &d) == 1 && same(d, v6("::1", 1)), "bracketed IPv6");
	ok(resolver_literal("::ffff:10.0.0.1", 443, &d) == 1 && d.family == AF_INET &&
	       same(d, v4("10.0.0.1", 443)),
	   "a v4-mapped literal is IPv4");
	ok(resolver_literal("api.anthropic.com", 443, &d) == 0, "a name is not a literal");
	ok(resolver_literal("", 443, &d) == 0, "empty");
	ok(resolver_literal("1.2.3", 443, &d) == 0, "short IPv4 form is not taken");
	ok(resolver_literal("127.0.0.1 ", 443, &d) == 0, "trailing space");
	ok(resolver_literal("[::1", 443, &d) == 0 && resolver_literal("[]", 443, &d) == 0,
	   "broken brackets");
	memset(big, ':', sizeof(big) - 1);
	big[0] = '[';
	big[sizeof(big) - 2] = ']';
	big[sizeof(big) - 1] = '\0';
	ok(resolver_literal(big, 443, &d) == 0, "an oversized bracketed literal");
}

static void test_hosts(void)
{
	struct diag_list dg = {0};
	struct resource_set *set = NULL;
	struct resolver_host *h = NULL, *h2 = NULL;
	size_t n = 0, n2 = 0, dropped = 99;
	const char *paths[] = {tmpdir};
	int r;

	write_file(
	    "svc.yaml",
	    "apiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: a}\n"
	    "spec:\n  addresses:\n  - {address: API.Example.com, port: 443}\n"
	    "  - {address: 127.1.2.3, port: 443}\n  - {address: '::1', port: 8443}\n"
	    "---\napiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: b}\n"
	    "spec:\n  addresses:\n  - {address: api.example.com., port: 443}\n"
	    "  - {address: api.example.com, port: 444}\n"
	    "---\napiVersion: vouch.dev/v1alpha1\nkind: Service\nmetadata: {name: plain}\n"
	    "spec:\n  tls: false\n  addresses:\n  - {address: plain.example.com, port: 80}\n");
	r = resources_load(paths, 1, &dg, &set);
	ok(r == 0, "fixture resources load (%d)", r);
	diag_print(&dg, stdout);
	diag_list_done(&dg);
	if (r < 0)
		return;
	r = resolver_hosts_from_set(set, &h, &n, &dropped);
	ok(r == 0 && dropped == 0, "hosts from the set");
	/* a: 3 pairs; b: api.example.com.:443 is a's (case, trailing dot), :444 is new;
	 * plain (tls: false) is not captured; built-in anthropic-api adds one. */
	ok(n == 5, "5 distinct (host, port) pairs of tls Services (%zu)", n);
	bool saw_builtin = false, saw_plain = false, saw444 = false;
	for (size_t i = 0; i < n; i++) {
		saw_builtin |= strcmp(h[i].host, "api.anthropic.com") == 0 && h[i].port == 443;
		saw_plain |= strcmp(h[i].host, "plain.example.com") == 0;
		saw444 |= h[i].port == 444;
	}
	ok(saw_builtin && !saw_plain && saw444,
	   "the built-in catalog is captured, tls: false is not, another port is another pair");
	ok(n >= 3 && !h[0].literal && h[0].n_addrs == 0 && h[1].literal && h[1].n_addrs == 1 &&
	       same(h[1].addrs[0], v4("127.1.2.3", 443)) && h[2].literal &&
	       same(h[2].addrs[0], v6("::1", 8443)),
	   "literals come with their address, names without");

	/* carry: a second list keeps the first list's resolutions */
	r = resolver_hosts_from_set(set, &h2, &n2, NULL);
	ok(r == 0 && n2 == n, "the same set again");
	h[0].addrs = calloc(2, sizeof(*h[0].addrs));
	h[0].addrs[0] = v4("10.0.0.1", 443);
	h[0].addrs[1] = v4("10.0.0.2", 443);
	h[0].n_addrs = 2;
	free(h2[0].host);
	h2[0].host = strdup("api.EXAMPLE.com.");
	resolver_hosts_carry(h2, n2, h, n);
	ok(h2[0].n_addrs == 2 && same(h2[0].addrs[0], v4("10.0.0.1", 443)) && h[0].addrs == NULL,
	   "carry moves a name's last resolution to the new list (host compared loosely)");
	ok(h2[1].n_addrs == 1 && h[1].n_addrs == 1, "literals are not carried over their own");
	resolver_hosts_free(h, n);
	resolver_hosts_free(h2, n2);
	resolver_hosts_free(NULL, 0);
	resource_set_unref(set);
	unlink("svc.yaml");
}

static void test_merge_diff(void)
{
	struct intercept_dest a1[] = {v4("10.0.0.2", 443), v4("10.0.0.1", 443),
				      v6("::ffff:10.0.0.1", 443)};
	struct intercept_dest a2[] = {v6("2001:db8::1", 443), v4("10.0.0.1", 443),
				      v4("10.0.0.1", 444)};
	struct resolver_host h[3] = {
	    {.host = "x", .port = 443, .addrs = a1, .n_addrs = 3},
	    {.host = "y", .port = 443, .addrs = a2, .n_addrs = 3},
	    {.host = "z", .port = 443}, /* unresolved */
	};
	struct intercept_dest *m = NULL, *m2 = NULL;
	size_t n = 0, n2 = 0, dropped = 9, add, rem;

	ok(resolver_merge(h, 3, &m, &n, &dropped) == 0 && dropped == 0, "merge");
	ok(n == 4 && same(m[0], v4("10.0.0.1", 443)) && same(m[1], v4("10.0.0.1", 444)) &&
	       same(m[2], v4("10.0.0.2", 443)) && same(m[3], v6("2001:db8::1", 443)),
	   "sorted union, duplicates (incl. v4-mapped) once, port part of the key");
	ok(resolver_merge(h + 2, 1, &m2, &n2, NULL) == 0 && n2 == 0 && m2 == NULL,
	   "nothing resolved: an empty list");
	resolver_diff(m, n, m, n, &add, &rem);
	ok(add == 0 && rem == 0, "diff of a list with itself: nothing");
	resolver_diff(NULL, 0, m, n, &add, &rem);
	ok(add == 4 && rem == 0, "from nothing: all added");
	resolver_diff(m, n, NULL, 0, &add, &rem);
	ok(add == 0 && rem == 4, "to nothing: all removed");
	resolver_diff(m, 3, m + 1, 3, &add, &rem);
	ok(add == 1 && rem == 1, "shifted window: one added, one removed");
	free(m);

	/* Bounds: more than ICPT_MAX_DESTS IPv4 destinations. */
	size_t nh = ICPT_MAX_DESTS / RESOLVER_MAX_ADDRS + 2;
	struct resolver_host *big = calloc(nh, sizeof(*big));
	for (size_t i = 0; i < nh; i++) {
		big[i].addrs = calloc(RESOLVER_MAX_ADDRS, sizeof(*big[i].addrs));
		big[i].n_addrs = RESOLVER_MAX_ADDRS;
		for (size_t j = 0; j < RESOLVER_MAX_ADDRS; j++) {
			big[i].addrs[j].family = AF_INET;
			big[i].addrs[j].addr.v4.s_addr =
			    htonl((uint32_t)(0x0a000000u + i * 256 + j));
			big[i].addrs[j].port = 443;
		}
	}
	big[0].addrs[0] = v6("2001:db8::7", 443);
	ok(resolver_merge(big, nh, &m, &n, &dropped) == 0, "merge of many");
	size_t n4 = 0, n6 = 0;
	for (size_t i = 0; i < n; i++) {
		if (m[i].family == AF_INET)
			n4++;
		else
			n6++;
	}
	ok(n4 == ICPT_MAX_DESTS && n6 == 1 &&
	       dropped == nh * RESOLVER_MAX_ADDRS - 1 - ICPT_MAX_DESTS,
	   "capped at %d per family, the rest counted (%zu dropped)", ICPT_MAX_DESTS, dropped);
	free(m);
	for (size_t i = 0; i < nh; i++)
		free(big[i].addrs);
	free(big);
}

static void test_resolve(void)
{
	struct intercept_dest *d = NULL;
	size_t n = 0;
	int r = resolver_resolve("localhost", 443, &d, &n);
	bool has_lo = false, ports = true, sorted = true;

	ok(r == 0 && n >= 1, "localhost resolves from /etc/hosts (%s)", r ? gai_strerror(r) : "ok");
	for (size_t i = 0; i < n; i++) {
		has_lo |= same(d[i], v4("127.0.0.1", 443)) || same(d[i], v6("::1", 443));
		ports &= d[i].port == 443;
		if (i)
			sorted &= resolver_dest_cmp(&d[i - 1], &d[i]) < 0;
	}
	ok(has_lo && ports && sorted, "to loopback, with the Service port, sorted and distinct");
	free(d);
	d = NULL;
	r = resolver_resolve("no-such-host.invalid", 443, &d, &n);
	ok(r < 0 && d == NULL, "an unknown name fails with an EAI code (%s)", gai_strerror(r));
	r = resolver_resolve("127.0.0.9", 80, &d, &n);
	ok(r == 0 && n == 1 && same(d[0], v4("127.0.0.9", 80)), "a literal resolves to itself");
	free(d);
}

/* ---- the thread, with a fake apply ---- */

struct fake {
	pthread_mutex_t mu;
	int calls;
	int fail_next; /* return -ENOMEM this many times */
	struct intercept_dest last[16];
	size_t n_last;
};

static int fake_apply(void *ctx, const struct intercept_dest *d, size_t n)
{
	struct fake *f = ctx;
	int r = 0;

	pthread_mutex_lock(&f->mu);
	f->calls++;
	if (f->fail_next > 0) {
		f->fail_next--;
		r = -ENOMEM;
	} else {
		f->n_last = n < 16 ? n : 16;
		memcpy(f->last, d, f->n_last * sizeof(*d));
	}
	pthread_mutex_unlock(&f->mu);
	return r;
}

static bool wait_stats(struct resolver *r, bool (*pred)(const struct resolver_stats *, void *),
		       void *arg)
{
	for (int i = 0; i < 1000; i++) {
		struct resolver_stats s;
		resolver_get_stats(r, &s);
		if (pred(&s, arg))
			return true;
		usleep(10000);
	}
	return false;
}

static bool applied_at_least(const struct resolver_stats *s, void *arg)
{
	return s->applied >= *(uint64_t *)arg;
}

static bool has_dest(struct fake *f, struct intercept_dest d)
{
	bool found = false;

	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < f->n_last; i++)
		found |= same(f->last[i], d);
	pthread_mutex_unlock(&f->mu);
	return found;
}

static void test_thread(void)
{
	struct fake f = {.mu = PTHREAD_MUTEX_INITIALIZER, .fail_next = 1};
	struct diag_list dg = {0};
	struct registry *reg = NULL;
	struct resolver *rs = NULL;
	struct resolver_stats st;
	uint64_t want;
	int r;

	write_file("svc.yaml", "apiVersion: vouch.dev/v1alpha1\nkind: Service\n"
			       "metadata: {name: anthropic-api}\n"
			       "spec:\n  addresses:\n  - {address: localhost, port: 9443}\n"
			       "  - {address: 127.1.2.3, port: 9443}\n");
	r = registry_new(tmpdir, &dg, &reg);
	ok(r == 0 && dg.n == 0, "registry over the fixture");
	diag_list_done(&dg);
	if (r < 0)
		return;
	ok(resolver_start(
	       &(struct resolver_opts){.registry = reg, .interval_s = 0, .apply = fake_apply},
	       &rs) == -EINVAL,
	   "interval 0 is refused");
	ok(resolver_start(&(struct resolver_opts){.registry = reg, .interval_s = 1}, &rs) ==
	       -EINVAL,
	   "an apply function is required");
	r = resolver_start(
	    &(struct resolver_opts){
		.registry = reg, .interval_s = 3600, .apply = fake_apply, .ctx = &f},
	    &rs);
	ok(r == 0, "resolver_start");
	if (r < 0) {
		registry_free(reg);
		return;
	}
	want = 1;
	ok(wait_stats(rs, applied_at_least, &want), "first apply fails, the retry installs");
	resolver_get_stats(rs, &st);
	ok(f.calls >= 2 && st.last_apply_error == 0 && st.hosts == 2 && st.unresolved == 0,
	   "apply retried after -ENOMEM (%d calls); 2 pairs, all resolved", f.calls);
	ok(has_dest(&f, v4("127.1.2.3", 9443)) && has_dest(&f, v4("127.0.0.1", 9443)),
	   "the literal and localhost's address are captured with the Service port");
	ok(!has_dest(&f, v4("127.1.2.3", 443)), "the built-in api.anthropic.com is replaced");

	/* A reload changes the set: re-resolved at once (no waiting for the 1 h interval). */
	write_file("svc.yaml", "apiVersion: vouch.dev/v1alpha1\nkind: Service\n"
			       "metadata: {name: anthropic-api}\n"
			       "spec:\n  addresses:\n  - {address: 127.1.2.4, port: 9443}\n"
			       "  - {address: no-such-host.invalid, port: 9443}\n");
	r = registry_reload(reg, true, &dg);
	diag_list_done(&dg);
	ok(r == 1, "reload");
	want = 2;
	ok(wait_stats(rs, applied_at_least, &want), "the new set is applied");
	resolver_get_stats(rs, &st);
	ok(has_dest(&f, v4("127.1.2.4", 9443)) && !has_dest(&f, v4("127.1.2.3", 9443)) &&
	       st.hosts == 2 && st.unresolved == 1 && st.dests == 1,
	   "new literal in, old one out; the unknown name is unresolved");
	int calls = f.calls;
	resolver_kick(rs);
	want = 0;
	for (int i = 0; i < 100; i++) {
		resolver_get_stats(rs, &st);
		if (st.rounds >= 3)
			break;
		usleep(10000);
	}
	ok(st.rounds >= 3 && f.calls == calls, "a kick re-resolves; nothing changed, no apply");
	resolver_stop(rs);
	resolver_stop(NULL);
	registry_free(reg);
	unlink("svc.yaml");
}

/* A DNS response for api.anthropic.com: A (ttl 300), AAAA (ttl 42), CNAME (ttl 5). */
static const unsigned char dns_answer[] = {
	0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00,
	3, 'a', 'p', 'i', 9, 'a', 'n', 't', 'h', 'r', 'o', 'p', 'i', 'c', 3, 'c', 'o', 'm', 0,
	0x00, 0x01, 0x00, 0x01,
	0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x04, 1, 2, 3, 4,
	0xc0, 0x0c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x10,
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
	0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x02, 0xc0, 0x0c,
};

static void test_ttl(void)
{
	uint32_t ttl = 0;
	bool safe = true;

	ok(resolver_answer_ttl(dns_answer, sizeof(dns_answer), &ttl) == 0 && ttl == 42,
	   "TTL is the smallest of the A/AAAA answers (a CNAME's shorter TTL is not an address)");
	for (size_t n = 0; n < sizeof(dns_answer); n++) {
		uint32_t t = 7;
		int r = resolver_answer_ttl(dns_answer, n, &t);
		/* A prefix may still parse if it ends on a record boundary with fewer
		 * answers... it cannot here: the header promises 3. */
		safe &= (r == -EBADMSG || r == -ENOENT) && t == 7;
	}
	ok(safe, "every truncation is refused without writing a TTL");
	unsigned char no_an[sizeof(dns_answer)];
	memcpy(no_an, dns_answer, sizeof(dns_answer));
	no_an[7] = 0; /* ANCOUNT 0 */
	/* header (12) + question (19-byte name, type, class): a complete answer-less reply */
	ok(resolver_answer_ttl(no_an, 12 + 19 + 4, &ttl) == -ENOENT, "no answers: -ENOENT");
	unsigned char bad[sizeof(dns_answer)];
	memcpy(bad, dns_answer, sizeof(dns_answer));
	bad[sizeof(dns_answer) - 1] = 0xff; /* compression pointer out of range */
	bad[sizeof(dns_answer) - 3] = 0x02;
	ttl = 0;
	int r = resolver_answer_ttl(bad, sizeof(dns_answer), &ttl);
	ok((r == 0 && ttl == 42) || (r == -EBADMSG && ttl == 0),
	   "a bad CNAME rdata never yields another TTL");
	ttl = 0;
	r = resolver_dns_ttl("no-such-host.invalid", &ttl);
	ok(r == -ENOENT && ttl == 0, "a name DNS does not answer has no TTL (the interval applies)");
}

int main(void)
{
	if (!mkdtemp(tmpdir) || chdir(tmpdir) < 0) {
		ok(0, "mkdtemp");
		return tap_done();
	}
	test_literal();
	test_hosts();
	test_merge_diff();
	test_resolve();
	test_thread();
	test_ttl();
	rmdir(tmpdir);
	return tap_done();
}
