/* Unit tests for scan (src/scan: detect, scan) and `vouch scan` (src/cli/scan.c): every
 * pattern with its kind, prefix and exact span; near misses that must not match;
 * fingerprints against an independent SHA-256; overlap rules; hostile lines; the file
 * walk (excluded directories, symlinks not followed and loops when followed, binary,
 * oversized and special files, depth cap, line numbers, buffer wiped after use); the
 * /proc reader on a fake proc tree (names, entries whose name is a key, exited
 * processes); the CLI's exit codes and that no secret character reaches its output.
 * scan.c and the CLI are compiled in here to reach their internals. */
#include "cli/admin.c"
#include "cli/scan.c"
#include "scan/scan.c"

#include "tap.h"
#include "tmpdir.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char tmpdir[] = "/tmp/vouch-test-scan.XXXXXX";

/* A deterministic generator of fake key material (base62), so failures reproduce. */
static unsigned long long rng = 0x9e3779b97f4a7c15ull;
static char rnd62(void)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return a[rng % 62];
}
static void fill(char *dst, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = rnd62();
	dst[n] = '\0';
}

/* The expected fingerprint, computed with OpenSSL directly (not through secret.c). */
static void expect_fp(const char *s, size_t n, char out[DETECT_FP_LEN])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	static const char hx[] = "0123456789abcdef";

	EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL);
	memcpy(out, "sha256:", 7);
	for (int i = 0; i < 6; i++) {
		out[7 + 2 * i] = hx[md[i] >> 4];
		out[8 + 2 * i] = hx[md[i] & 15];
	}
	out[19] = '\0';
}

/* One hit of kind with prefix on line, whose span is exactly secret (a substring). */
static void one(const char *line, enum detect_kind kind, const char *prefix, const char *secret,
		const char *what)
{
	struct detect_hit h[DETECT_MAX_HITS];
	size_t n = detect_line(line, strlen(line), h, DETECT_MAX_HITS);
	const char *at = strstr(line, secret);
	char fp[DETECT_FP_LEN];

	expect_fp(secret, strlen(secret), fp);
	ok(n == 1 && h[0].kind == kind && strcmp(h[0].prefix, prefix) == 0 && at &&
	       h[0].off == (size_t)(at - line) && h[0].len == strlen(secret) &&
	       strcmp(h[0].fingerprint, fp) == 0,
	   "%s: %s, prefix '%s', exact span and fingerprint (got %zu hit%s: %s '%s')", what,
	   detect_kind_name(kind), prefix, n, n == 1 ? "" : "s",
	   n ? detect_kind_name(h[0].kind) : "-", n ? h[0].prefix : "");
}

static void none(const char *line, const char *what)
{
	struct detect_hit h[DETECT_MAX_HITS];
	size_t n = detect_line(line, strlen(line), h, DETECT_MAX_HITS);

	ok(n == 0, "not a credential: %s (got %s)", what, n ? detect_kind_name(h[0].kind) : "none");
}

static char ant[160], oai[200], aws_id[32], aws_sec[48], ghp[160], ghpat[160], gen[48], jwt[200];

static void make_keys(void)
{
	char b[128];

	fill(b, 93);
	snprintf(ant, sizeof(ant), "sk-ant-api03-FAKEtestonly%sAA", b);
	fill(b, 120);
	snprintf(oai, sizeof(oai), "sk-proj-%s", b);
	snprintf(aws_id, sizeof(aws_id), "AKIA");
	for (int i = 0; i < 16; i++)
		aws_id[4 + i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[(unsigned char)rnd62() % 32];
	aws_id[20] = '\0';
	fill(aws_sec, 40);
	aws_sec[7] = '/';
	aws_sec[20] = '+';
	fill(b, 36);
	snprintf(ghp, sizeof(ghp), "ghp_%s", b);
	fill(b, 22);
	snprintf(ghpat, sizeof(ghpat), "github_pat_%s_", b);
	fill(ghpat + strlen(ghpat), 59);
	fill(gen, 32);
	char h[40], p[80], s[48];
	fill(h, 20);
	fill(p, 60);
	fill(s, 43);
	snprintf(jwt, sizeof(jwt), "eyJ%s.eyJ%s.%s", h, p, s);
}

static void test_patterns(void)
{
	char line[1024], k[200], b[128];

	snprintf(line, sizeof(line), "ANTHROPIC_API_KEY=%s", ant);
	one(line, DETECT_ANTHROPIC_API_KEY, "sk-ant-api03-", ant, "env assignment");
	fill(b, 93);
	snprintf(k, sizeof(k), "sk-ant-admin01-FAKEtestonly%sAA", b);
	snprintf(line, sizeof(line), "  admin_key: \"%s\"", k);
	one(line, DETECT_ANTHROPIC_ADMIN_KEY, "sk-ant-admin01-", k, "YAML, quoted");
	fill(b, 90);
	snprintf(k, sizeof(k), "sk-ant-oat01-FAKEtestonly%s", b);
	snprintf(line, sizeof(line), "x-api-key: %s", k);
	one(line, DETECT_ANTHROPIC_KEY, "sk-ant-oat01-", k, "another sk-ant- type tag");
	fill(b, 60);
	snprintf(k, sizeof(k), "sk-ant-%s", b);
	snprintf(line, sizeof(line), "key=%s;", k);
	one(line, DETECT_ANTHROPIC_KEY, "sk-ant-", k,
	    "sk-ant- without a type tag: no body in the prefix");

	snprintf(line, sizeof(line), "OPENAI_API_KEY=%s", oai);
	one(line, DETECT_OPENAI_PROJECT_KEY, "sk-proj-", oai, "OpenAI project key");
	fill(b, 48);
	snprintf(k, sizeof(k), "sk-%s", b);
	snprintf(line, sizeof(line), "openai.api_key = '%s'", k);
	one(line, DETECT_OPENAI_KEY, "sk-", k, "OpenAI legacy key in Python");
	fill(b, 70);
	snprintf(k, sizeof(k), "sk-svcacct-%s", b);
	one(k, DETECT_OPENAI_SVCACCT_KEY, "sk-svcacct-", k, "OpenAI service account key alone");
	snprintf(k, sizeof(k), "sk-admin-%s", b);
	snprintf(line, sizeof(line), "{\"k\":\"%s\"}", k);
	one(line, DETECT_OPENAI_ADMIN_KEY, "sk-admin-", k, "OpenAI admin key in JSON");

	snprintf(line, sizeof(line), "aws_access_key_id = %s", aws_id);
	one(line, DETECT_AWS_ACCESS_KEY_ID, "AKIA", aws_id, "AWS access key id");
	memcpy(k, aws_id, 21);
	memcpy(k, "ASIA", 4);
	snprintf(line, sizeof(line), "\"AccessKeyId\": \"%s\",", k);
	one(line, DETECT_AWS_TEMP_KEY_ID, "ASIA", k, "AWS temporary key id");
	snprintf(line, sizeof(line), "aws_secret_access_key = %s", aws_sec);
	one(line, DETECT_AWS_SECRET_KEY, "", aws_sec, "AWS secret next to aws_secret_access_key");
	snprintf(line, sizeof(line), "export AWS_SECRET_ACCESS_KEY=\"%s\"", aws_sec);
	one(line, DETECT_AWS_SECRET_KEY, "", aws_sec, "AWS secret, shell export");
	snprintf(line, sizeof(line), "\"SecretAccessKey\": \"%s\"", aws_sec);
	one(line, DETECT_AWS_SECRET_KEY, "", aws_sec, "AWS secret, STS JSON");

	static const struct {
		char c;
		enum detect_kind kind;
		const char *prefix;
	} gh[] = {{'p', DETECT_GITHUB_PAT, "ghp_"},
		  {'o', DETECT_GITHUB_OAUTH, "gho_"},
		  {'u', DETECT_GITHUB_USER_TOKEN, "ghu_"},
		  {'s', DETECT_GITHUB_APP_TOKEN, "ghs_"},
		  {'r', DETECT_GITHUB_REFRESH, "ghr_"}};
	for (size_t i = 0; i < sizeof(gh) / sizeof(gh[0]); i++) {
		memcpy(k, ghp, sizeof(ghp));
		k[2] = gh[i].c;
		snprintf(line, sizeof(line), "GH_TOKEN=%s", k);
		one(line, gh[i].kind, gh[i].prefix, k, "GitHub token");
	}
	snprintf(line, sizeof(line), "git clone https://x:%s@github.com/o/r", ghpat);
	one(line, DETECT_GITHUB_FINE_PAT, "github_pat_", ghpat, "GitHub fine-grained PAT in a URL");

	snprintf(line, sizeof(line), "STRIPE_API_KEY=%s", gen);
	one(line, DETECT_GENERIC_SECRET, "", gen, "*_API_KEY");
	snprintf(line, sizeof(line), "export SLACK_BOT_TOKEN='%s'", gen);
	one(line, DETECT_GENERIC_SECRET, "", gen, "*_TOKEN, exported, single quotes");
	snprintf(line, sizeof(line), "  \"client_secret\": \"%s\",", gen);
	one(line, DETECT_GENERIC_SECRET, "", gen, "*_secret in JSON");
	snprintf(line, sizeof(line), "  apiKey: %s # prod", gen);
	one(line, DETECT_GENERIC_SECRET, "", gen, "camelCase apiKey in YAML with a comment");
	snprintf(line, sizeof(line), "DJANGO_SECRET_KEY := %s", gen);
	one(line, DETECT_GENERIC_SECRET, "", gen, "*_SECRET_KEY with :=");
	snprintf(line, sizeof(line), "https://api.example.com/v1?token=%s&x=1", gen);
	one(line, DETECT_GENERIC_SECRET, "", gen, "token= in a query string");
	snprintf(line, sizeof(line), "Authorization: Bearer %s", jwt);
	one(line, DETECT_BEARER, "", jwt, "Authorization: Bearer JWT");
	snprintf(line, sizeof(line), "curl -H \"authorization: bearer %s\" https://x", gen);
	one(line, DETECT_BEARER, "", gen, "lower-case bearer in a curl line");
}

static void test_near_misses(void)
{
	char line[1024], b[128];

	none("", "an empty line");
	none("sk-ant-api03-abcDEF123", "sk-ant- key too short");
	memset(b, 'A', 93);
	b[93] = '\0';
	snprintf(line, sizeof(line), "sk-ant-api03-%s", b);
	none(line, "sk-ant- with a repeated character");
	none("sk-ant-api03-this-is-not-a-real-key-just-some-words-in-kebab-case",
	     "sk-ant- kebab words");
	none("task-manager-orchestrator-process-for-distributed-jobs-123", "'sk-' inside a word");
	none("risk-assessment-framework-for-large-projects-2024-edition",
	     "'sk-' inside another word");
	none("pip install sk-learn-is-a-machine-learning-library-for-python",
	     "sk- lower-case prose");
	none("token=\"sk-ant-oat01-fake-bench-only-not-a-real-token-0123456789abcdef\"",
	     "sk-ant- lower-case words and hex");
	none("api_key=\"sk-ant-api03-bench-placeholder2\"",
	     "an sk-ant- placeholder is not a generic secret either");
	none("GH_TOKEN=ghp_tooShort123ABCdefGHI456", "a short ghp_ is not a generic secret either");
	none("AKIAIOSFODNN7EXAMPLE", "AWS's documented example key id");
	none("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	     "AWS's example secret");
	none("AKIAABCDEFGHIJKLMNO", "AKIA + 15");
	none("AKIAABCDEFGHIJKLMNOPQ", "AKIA + 17");
	none("xAKIAABCDEFGHIJ23456", "AKIA inside a word");
	none("AKIAAAAAAAAAAAAAAAAA", "AKIA + a repeated character");
	none("AKIAabcdefghij234567", "AKIA + lower case");
	none("aws_secret_access_key = tooShort1234", "aws secret of the wrong length");
	none("ghp_abcdefghijklmnopqrstuvwxyzABCDEF123", "ghp_ + 35");
	snprintf(line, sizeof(line), "%s_suffix", ghp);
	none(line, "ghp_ + 36 running on into more token characters");
	none("ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ghp_ + a repeated character");
	none("ANTHROPIC_API_KEY=vouch-managed", "vouch's placeholder");
	none("API_KEY=changeme", "a short word");
	none("OPENAI_API_KEY=${OPENAI_API_KEY}", "a shell reference");
	none("token: ${{ secrets.GITHUB_TOKEN }}", "a CI template");
	none("api_key: <your-api-key-goes-here-2024>", "an angle-bracket placeholder");
	none("SECRET=YourSecretGoesHereForSureOk", "CamelCase words without a digit");
	none("AUTH_TOKEN=your_token_here_without_any_digits", "snake_case words without a digit");
	none("TOKEN=aaaaaaaaaaaaaaaaaaaaaaaaa1", "low entropy");
	none("max_tokens: 1024", "max_tokens");
	none("ACCESS_TOKEN=/run/secrets/access-token-2024-q3-abcdef", "a path");
	none("token_url: https://example.com/oauth2/token1234567890abc",
	     "a URL value under a *_url name");
	none("api_token: https://example.com/oauth2/token1234567890abc", "a URL value");
	none("if (api_key == \"a8f3k29dj3kd93kdl20dk3ld\")", "a comparison, not an assignment");
	none("Authorization: Bearer <token>", "Bearer placeholder");
	none("Authorization: Bearer ${TOKEN}", "Bearer reference");
	none("the bearer  of bad news arrived yesterday at 10", "the word bearer in prose");
	none("password: hunter2", "a short password under a name not in the rules");
	memset(line, 'a', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	none(line, "a long run of one letter");
}

static void test_lines(void)
{
	struct detect_hit h[DETECT_MAX_HITS];
	char line[4096];
	size_t n;

	snprintf(line, sizeof(line), "Authorization: Bearer %s", ant);
	n = detect_line(line, strlen(line), h, DETECT_MAX_HITS);
	ok(n == 1 && h[0].kind == DETECT_ANTHROPIC_API_KEY,
	   "a Bearer sk-ant- key is one finding, of the specific kind");
	snprintf(line, sizeof(line), "GITHUB_TOKEN=%s", ghp);
	n = detect_line(line, strlen(line), h, DETECT_MAX_HITS);
	ok(n == 1 && h[0].kind == DETECT_GITHUB_PAT,
	   "GITHUB_TOKEN=ghp_… is one github-pat finding");
	snprintf(line, sizeof(line), "a=%s b=%s c=%s", oai, aws_id, ant);
	n = detect_line(line, strlen(line), h, DETECT_MAX_HITS);
	ok(n == 3 && h[0].kind == DETECT_OPENAI_PROJECT_KEY &&
	       h[1].kind == DETECT_AWS_ACCESS_KEY_ID && h[2].kind == DETECT_ANTHROPIC_API_KEY &&
	       h[0].off < h[1].off && h[1].off < h[2].off,
	   "three keys on a line: three findings in line order");
	ok(strcmp(h[0].fingerprint, h[2].fingerprint) != 0,
	   "different keys, different fingerprints");

	size_t len = 0;
	for (int i = 0; i < 20; i++)
		len += (size_t)snprintf(line + len, sizeof(line) - len, "%s ", ant);
	n = detect_line(line, len, h, DETECT_MAX_HITS);
	ok(n == DETECT_MAX_HITS, "a line with 20 keys reports the first %d", DETECT_MAX_HITS);
	n = detect_line(line, len, h, 2);
	ok(n == 2, "and never more than max");

	/* binary junk around a key: NULs, high bytes, no terminator */
	char junk[300];
	size_t kl = strlen(ant);
	memset(junk, 0xff, sizeof(junk));
	junk[10] = '\0';
	junk[20] = ' ';
	memcpy(junk + 21, ant, kl);
	junk[21 + kl] = '\0';
	n = detect_line(junk, sizeof(junk), h, DETECT_MAX_HITS);
	ok(n == 1 && h[0].off == 21 && h[0].len == kl,
	   "a key between NULs and 0xff bytes is found");
	n = detect_line(ant, kl - 60, h, DETECT_MAX_HITS);
	ok(n == 1 && h[0].len == kl - 60, "the length bounds the scan: a cut key is seen as cut");
	n = detect_line(ant, 20, h, DETECT_MAX_HITS);
	ok(n == 0, "a key cut below the minimum body is not a key");

	char fp[DETECT_FP_LEN];
	detect_fingerprint("abc", 3, fp);
	ok(strcmp(fp, "sha256:ba7816bf8f01") == 0, "fingerprint of \"abc\" (FIPS 180-2 vector): %s",
	   fp);
	ok(strcmp(detect_kind_name(DETECT_KIND_COUNT), "unknown") == 0 &&
	       strcmp(detect_kind_name((enum detect_kind) - 1), "unknown") == 0,
	   "kind names out of range");
	ok(detect_entropy("aaaa", 4) == 0 && detect_entropy("ab", 2) == 1.0 &&
	       detect_entropy("", 0) == 0,
	   "entropy: 0 for one symbol, 1 bit for two");
}

/* Hostile lines where names nest in one long value run ("token=token=…", "a=a=…"): the
 * generic pass must stay linear. Run in a child with a generous alarm (minutes of work
 * when quadratic, milliseconds when not); no timing is asserted beyond that bound. */
static void test_nested_names(void)
{
	static const char *const unit[] = {"token=", "a=", "Bearer ", "x-api-key:"};

	for (size_t u = 0; u < sizeof(unit) / sizeof(unit[0]); u++) {
		size_t ul = strlen(unit[u]), n = (4u << 20) / ul * ul;
		pid_t pid = fork();
		if (pid == 0) {
			struct detect_hit h[DETECT_MAX_HITS];
			char *line = malloc(n + 40);
			if (!line)
				_exit(3);
			for (size_t i = 0; i < n; i += ul)
				memcpy(line + i, unit[u], ul);
			memcpy(line + n, "9f8Q2kLm7Xz4Rt6Wp1Vb3Nc5", 24); /* an opaque tail */
			alarm(120);
			detect_line(line, n + 24, h, DETECT_MAX_HITS);
			_exit(0);
		}
		int st = 0;
		waitpid(pid, &st, 0);
		ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		   "a 4 MiB line of \"%s\" repeated is scanned in linear time (status %d)", unit[u],
		   st);
	}
}

/* ---- the walk ---------------------------------------------------------------- */

struct found {
	char where[64][600];
	enum detect_kind kind[64];
	char problems[32][600];
	size_t n, np;
	bool buffer_dirty; /* set by a check of the scanner's buffer between files */
};

static struct scan *cur; /* the scanner under test, for the wipe check */

static void f_hit(void *ctx, const struct scan_where *w, const struct detect_hit *h)
{
	struct found *f = ctx;

	if (f->n >= 64)
		return;
	if (w->path)
		snprintf(f->where[f->n], sizeof(f->where[0]), "%s:%lu", w->path, w->line);
	else
		snprintf(f->where[f->n], sizeof(f->where[0]), "pid %d start %llu env %s #%zu",
			 (int)w->pid, w->start, w->env_name ? w->env_name : "(none)", w->env_index);
	f->kind[f->n++] = h->kind;
}

static void f_problem(void *ctx, const char *what, const char *why)
{
	struct found *f = ctx;

	if (f->np < 32)
		snprintf(f->problems[f->np++], sizeof(f->problems[0]), "%s: %s", what, why);
}

static bool found_at(const struct found *f, const char *suffix, enum detect_kind kind)
{
	for (size_t i = 0; i < f->n; i++) {
		size_t a = strlen(f->where[i]), b = strlen(suffix);
		if (a >= b && strcmp(f->where[i] + a - b, suffix) == 0 && f->kind[i] == kind)
			return true;
	}
	return false;
}

static bool problem_like(const struct found *f, const char *needle)
{
	for (size_t i = 0; i < f->np; i++)
		if (strstr(f->problems[i], needle))
			return true;
	return false;
}

static void put(const char *rel, const char *text, size_t len)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", tmpdir, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		(void)!write(fd, text, len);
		close(fd);
	}
}

static void sub(const char *rel)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", tmpdir, rel);
	mkdir(p, 0700);
}

static bool all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void test_walk(void)
{
	char text[2048], p[600], q[600];
	struct found *f = calloc(1, sizeof(*f));
	struct scan_opts o = {0};
	struct scan_stats st;
	struct scan *s;
	int r;

	sub("tree");
	sub("tree/app");
	sub("tree/.git");
	sub("tree/node_modules");
	sub("tree/deep");
	snprintf(text, sizeof(text), "# comment\nFOO=bar\nANTHROPIC_API_KEY=%s\n", ant);
	put("tree/.env", text, strlen(text));
	snprintf(text, sizeof(text),
		 "service:\n  name: x\n  openai:\n    apiKey: \"%s\"\n  github: %s\n", oai, ghp);
	put("tree/app/config.yaml", text, strlen(text));
	snprintf(text, sizeof(text), "[core]\n\ttoken = %s\n", ghp);
	put("tree/.git/config", text, strlen(text));
	put("tree/node_modules/.env", text, strlen(text));
	/* a binary file holding a key */
	memset(text, 0, sizeof(text));
	memcpy(text + 100, ant, strlen(ant));
	put("tree/app/blob.bin", text, sizeof(text));
	/* a key outside the tree, reachable only through a symlink */
	sub("outside");
	snprintf(text, sizeof(text), "AWS_ACCESS_KEY_ID=%s\n", aws_id);
	put("outside/creds", text, strlen(text));
	snprintf(p, sizeof(p), "%s/outside/creds", tmpdir);
	snprintf(q, sizeof(q), "%s/tree/app/link", tmpdir);
	ok(symlink(p, q) == 0, "fixture: a symlink out of the tree");
	snprintf(q, sizeof(q), "%s/tree/app/loop", tmpdir);
	ok(symlink("..", q) == 0, "fixture: a symlink loop"); /* tree/app/loop -> tree */
	snprintf(q, sizeof(q), "%s/tree/app/fifo", tmpdir);
	mkfifo(q, 0600);

	s = scan_new(&o, &(struct scan_cb){.hit = f_hit, .problem = f_problem, .ctx = f});
	cur = s;
	snprintf(p, sizeof(p), "%s/tree", tmpdir);
	r = scan_path(s, p);
	scan_get_stats(s, &st);
	ok(r == 0, "a directory is walked");
	ok(found_at(f, "tree/.env:3", DETECT_ANTHROPIC_API_KEY), ".env: the key on line 3");
	ok(found_at(f, "tree/app/config.yaml:4", DETECT_OPENAI_PROJECT_KEY) &&
	       found_at(f, "tree/app/config.yaml:5", DETECT_GITHUB_PAT),
	   "config.yaml: lines 4 and 5");
	ok(f->n == 3, "nothing else: .git, node_modules, the binary, the symlinks, the fifo (%zu)",
	   f->n);
	ok(st.skipped[SCAN_SKIP_EXCLUDED] == 2 && st.skipped[SCAN_SKIP_BINARY] == 1 &&
	       st.skipped[SCAN_SKIP_SYMLINK] == 2 && st.skipped[SCAN_SKIP_SPECIAL] == 1 &&
	       st.files == 2,
	   "counted: 2 excluded, 1 binary, 2 symlinks, 1 special, 2 files");
	ok(all_zero(s->buf->data, s->buf->cap + 1), "the read buffer is wiped after the walk");
	ok(s->buf->cap >= SCAN_ENVIRON_MAX, "one buffer sized for an environment");
	scan_free(s);

	/* following symlinks: the outside key is found; the loop is reported, not walked twice */
	memset(f, 0, sizeof(*f));
	o.follow_symlinks = true;
	o.no_skip_defaults = true;
	s = scan_new(&o, &(struct scan_cb){.hit = f_hit, .problem = f_problem, .ctx = f});
	r = scan_path(s, p);
	scan_get_stats(s, &st);
	ok(r == 0 && found_at(f, "tree/app/link:1", DETECT_AWS_ACCESS_KEY_ID),
	   "--follow-symlinks: the key behind the link is found");
	ok(problem_like(f, "tree/app/loop: symlink loop"), "the loop is reported (%s)",
	   f->np ? f->problems[0] : "no problem");
	ok(found_at(f, "tree/.git/config:2", DETECT_GITHUB_PAT) &&
	       found_at(f, "tree/node_modules/.env:2", DETECT_GITHUB_PAT),
	   "--all: .git and node_modules are scanned");
	scan_free(s);

	/* size cap: a text file over it is reported, never silently passed */
	memset(f, 0, sizeof(*f));
	o = (struct scan_opts){.max_file_size = 64};
	s = scan_new(&o, &(struct scan_cb){.hit = f_hit, .problem = f_problem, .ctx = f});
	snprintf(p, sizeof(p), "%s/tree/.env", tmpdir);
	r = scan_path(s, p);
	ok(r == 0 && f->n == 0 && problem_like(f, "larger than 64 bytes"),
	   "a file over --max-size is reported as not scanned");
	ok(all_zero(s->buf->data, s->buf->cap + 1), "and the probe is wiped");
	scan_free(s);

	/* depth cap */
	memset(f, 0, sizeof(*f));
	o = (struct scan_opts){0};
	s = scan_new(&o, &(struct scan_cb){.hit = f_hit, .problem = f_problem, .ctx = f});
	snprintf(p, sizeof(p), "%s/tree/deep", tmpdir);
	for (int i = 0; i < SCAN_MAX_DEPTH + 3; i++) {
		size_t l = strlen(p);
		snprintf(p + l, sizeof(p) - l, "/d");
		mkdir(p, 0700);
	}
	snprintf(p, sizeof(p), "%s/tree/deep", tmpdir);
	r = scan_path(s, p);
	ok(r == 0 && problem_like(f, "deeper than 64 levels"), "the depth cap is reported");
	scan_free(s);

	/* the PATH itself */
	s = scan_new(&o, &(struct scan_cb){.hit = f_hit, .ctx = f});
	snprintf(p, sizeof(p), "%s/none", tmpdir);
	ok(scan_path(s, p) == -ENOENT, "a missing PATH: -ENOENT");
	snprintf(p, sizeof(p), "%s/tree/app/fifo", tmpdir);
	ok(scan_path(s, p) == -EINVAL, "a fifo as PATH: -EINVAL, without blocking");
	ok(scan_path(s, "/proc/self") == -EREMOTE, "/proc as PATH: a pseudo file system");
	scan_free(s);
	free(f);
}

/* ---- the /proc reader on a fake tree --------------------------------------------- */

static void fake_proc(const char *pid, const char *stat, const char *env, size_t envlen)
{
	char rel[300];
	snprintf(rel, sizeof(rel), "proc/%s", pid);
	sub(rel);
	if (stat) {
		snprintf(rel, sizeof(rel), "proc/%s/stat", pid);
		put(rel, stat, strlen(stat));
	}
	if (env) {
		snprintf(rel, sizeof(rel), "proc/%s/environ", pid);
		put(rel, env, envlen);
	}
}

static void test_procs(void)
{
	char env[1024], p[600], where[300];
	struct found *f = calloc(1, sizeof(*f));
	struct scan_opts o = {0};
	struct scan_stats st;
	const char *stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 "
			   "987654 1000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1\n";
	size_t n = 0;

	sub("proc");
	n += (size_t)snprintf(env + n, sizeof(env) - n, "PATH=/usr/bin") + 1;
	n += (size_t)snprintf(env + n, sizeof(env) - n, "ANTHROPIC_API_KEY=%s", ant) + 1;
	n += (size_t)snprintf(env + n, sizeof(env) - n, "%s=1", aws_id) + 1; /* key as name */
	n += (size_t)snprintf(env + n, sizeof(env) - n, "BAD\x1bNAME=%s", ghp) + 1;
	n += (size_t)snprintf(env + n, sizeof(env) - n, "LAST=%s", oai); /* no final NUL */
	fake_proc("42", stat, env, n);
	fake_proc("43", NULL, env, n);	/* exited: no stat */
	fake_proc("44", stat, NULL, 0); /* exited: no environ */
	fake_proc("45", stat, env, n);	/* "self" */
	fake_proc("0045", stat, env, n);
	fake_proc("self", stat, env, n);
	fake_proc("99999999999", stat, env, n);

	struct scan *s =
	    scan_new(&o, &(struct scan_cb){.hit = f_hit, .problem = f_problem, .ctx = f});
	snprintf(p, sizeof(p), "%s/proc", tmpdir);
	ok(scan_procs(s, p, 45) == 0, "a proc tree is read");
	scan_get_stats(s, &st);
	ok(st.processes == 1 && st.skipped[SCAN_SKIP_PROC_GONE] == 2,
	   "one environment searched; two processes counted as exited (%zu, %zu)", st.processes,
	   st.skipped[SCAN_SKIP_PROC_GONE]);
	ok(f->n == 4, "four keys, only from pid 42 (not self, not 0045, not 'self'): %zu", f->n);
	ok(found_at(f, "pid 42 start 987654 env ANTHROPIC_API_KEY #1", DETECT_ANTHROPIC_API_KEY),
	   "pid, start time (comm with ') ' in it), variable name and index: %s", f->where[0]);
	snprintf(where, sizeof(where), "pid 42 start 987654 env (none) #2");
	ok(found_at(f, where, DETECT_AWS_ACCESS_KEY_ID), "a key used as a variable name: no name");
	ok(found_at(f, "pid 42 start 987654 env (none) #3", DETECT_GITHUB_PAT),
	   "a name with a control character is not passed on");
	ok(found_at(f, "pid 42 start 987654 env LAST #4", DETECT_OPENAI_PROJECT_KEY),
	   "the last entry without a terminating NUL");
	ok(all_zero(s->buf->data, s->buf->cap + 1), "the buffer is wiped after the environments");
	ok(scan_procs(s, "/nonexistent-proc", 0) == -ENOENT, "a missing proc root: -ENOENT");
	scan_free(s);
	free(f);
}

/* ---- the CLI --------------------------------------------------------------------- */

/* Run cli_scan with stdout and stderr captured into out (NUL-terminated). */
static int run_cli(char **argv, int argc, char *out, size_t cap)
{
	struct cli c = {.admin_socket = "/nonexistent/vouch-admin.sock"};
	char path[600];
	int saved1 = dup(1), saved2 = dup(2), fd, rc;

	snprintf(path, sizeof(path), "%s/cli.out", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	fflush(stdout);
	fflush(stderr);
	dup2(fd, 1);
	dup2(fd, 2);
	rc = cli_scan(&c, argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(saved1, 1);
	dup2(saved2, 2);
	close(saved1);
	close(saved2);
	ssize_t n = pread(fd, out, cap - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	return rc;
}

/* Does out contain any 8-character window of secret past its public prefix? */
static bool leaks(const char *out, const char *secret, size_t public_len)
{
	char w[9];
	size_t n = strlen(secret);

	for (size_t i = public_len; i + 8 <= n; i++) {
		memcpy(w, secret + i, 8);
		w[8] = '\0';
		if (strstr(out, w))
			return true;
	}
	return false;
}

static void test_cli(void)
{
	static char out[1 << 16];
	char p[600], clean[600], text[1024];
	int rc;

	sub("cli");
	sub("clean");
	snprintf(text, sizeof(text),
		 "ANTHROPIC_API_KEY=%s\nAWS_SECRET_ACCESS_KEY=%s\nAuthorization: Bearer %s\n", ant,
		 aws_sec, jwt);
	put("cli/.env", text, strlen(text));
	snprintf(text, sizeof(text), "openai:\n  key: %s\n", oai);
	put("cli/weird\x1b[31m\xff.yaml", text, strlen(text));
	put("clean/.env", "FOO=bar\nANTHROPIC_API_KEY=vouch-managed\n", 40);
	snprintf(p, sizeof(p), "%s/cli", tmpdir);
	snprintf(clean, sizeof(clean), "%s/clean", tmpdir);

	rc = run_cli((char *[]){"--no-proc", p}, 2, out, sizeof(out));
	ok(rc == 1, "findings: exit 1");
	ok(strstr(out, "sk-ant-api03-…") && strstr(out, "anthropic-api-key") &&
	       strstr(out, "aws-secret-access-key") && strstr(out, "bearer-token") &&
	       strstr(out, "openai-project-key") && strstr(out, "/.env:1") &&
	       strstr(out, "/.env:2") && strstr(out, "/.env:3"),
	   "the table names kinds, prefixes and file:line");
	const char *last = out + strlen(out) - 1;
	while (last > out && last[-1] != '\n')
		last--;
	ok(strcmp(last, "4 static keys found (trust debt)\n") == 0, "last line: %.*s",
	   (int)strcspn(last, "\n"), last);
	ok(!leaks(out, ant, 13) && !leaks(out, aws_sec, 0) && !leaks(out, jwt, 0) &&
	       !leaks(out, oai, 8),
	   "no 8 characters of any secret in the table");
	ok(!strchr(out, '\x1b') && !memchr(out, 0xff, strlen(out)) &&
	       strstr(out, "weird?[31m?.yaml:2"),
	   "a hostile file name is shown with its control and invalid bytes replaced");

	rc = run_cli((char *[]){"-o", "json", "--no-proc", p}, 4, out, sizeof(out));
	json_error_t je;
	json_t *j = json_loads(out, JSON_DISABLE_EOF_CHECK, &je);
	ok(rc == 1 && j && json_integer_value(json_object_get(j, "total")) == 4 &&
	       json_array_size(json_object_get(j, "findings")) == 4,
	   "-o json: total 4, four findings");
	json_t *f0 = json_array_get(json_object_get(j, "findings"), 0);
	ok(f0 && json_is_string(json_object_get(f0, "kind")) &&
	       json_is_string(json_object_get(f0, "fingerprint")) &&
	       json_is_string(json_object_get(f0, "where")) &&
	       strncmp(json_string_value(json_object_get(f0, "fingerprint")), "sha256:", 7) == 0,
	   "each finding has kind, fingerprint and where (the status schema)");
	ok(!leaks(out, ant, 13) && !leaks(out, aws_sec, 0) && !leaks(out, jwt, 0) &&
	       !leaks(out, oai, 8),
	   "no 8 characters of any secret in the JSON");
	json_decref(j);

	/* the same key in two places is one key of trust debt */
	snprintf(text, sizeof(text), "A_TOKEN=%s\nB_TOKEN=%s\n", gen, gen);
	put("cli/.env", text, strlen(text));
	rc = run_cli((char *[]){"--no-proc", p}, 2, out, sizeof(out));
	ok(rc == 1 && strstr(out, "\n2 static keys found (trust debt)\n"),
	   "a key found twice counts once (the openai key plus it: 2)");

	rc = run_cli((char *[]){"--no-proc", clean}, 2, out, sizeof(out));
	ok(rc == 0 && strstr(out, "0 static keys found (trust debt)\n"), "a clean dir: exit 0");

	snprintf(p, sizeof(p), "%s/absent", tmpdir);
	ok(run_cli((char *[]){"--no-proc", p}, 2, out, sizeof(out)) == 2,
	   "a PATH that does not exist: exit 2");
	ok(run_cli((char *[]){"--bogus"}, 1, out, sizeof(out)) == 2, "an unknown option: exit 2");
	ok(run_cli((char *[]){"--no-proc"}, 1, out, sizeof(out)) == 2, "nothing to scan: exit 2");
	ok(run_cli((char *[]){"-o", "yaml", clean}, 3, out, sizeof(out)) == 2, "-o yaml: exit 2");
	ok(run_cli((char *[]){"--max-size", "0", clean}, 3, out, sizeof(out)) == 2 &&
	       run_cli((char *[]){"--max-size", "-5", clean}, 3, out, sizeof(out)) == 2 &&
	       run_cli((char *[]){"--max-size", "99999999999", clean}, 3, out, sizeof(out)) == 2,
	   "--max-size out of range: exit 2");

	char safe_in[] = "a\x1b[2Jb\xc2\x9b"
			 "c\xe2\x82\xac\xed\xa0\x80\xf4\x90\x80\x80z";
	char *safe = safe_text(safe_in, strlen(safe_in));
	ok(safe && strcmp(safe, "a?[2Jb??c\xe2\x82\xac???????z") == 0,
	   "safe_text: ESC, C1 (U+009B), surrogates and >U+10FFFF become '?', U+20AC stays (%s)",
	   safe ? safe : "NULL");
	free(safe);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	make_keys();
	test_patterns();
	test_near_misses();
	test_lines();
	test_nested_names();
	test_walk();
	test_procs();
	test_cli();
	tmpdir_remove(tmpdir);
	return tap_done();
}
