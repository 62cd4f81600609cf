/* Unit tests for src/common (base64, secret, net) and src/audit. */
#include "audit/audit.h"
#include "common/base64.h"
#include "common/net.h"
#include "common/readfile.h"
#include "common/secret.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
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
	static char buf[1 << 17], big[6000];
	const char *bad_utf8 = "/v1/\xff\xc0\xafx\xed\xa0\x80y\xf4\x90\x80\x80z\xe2\x82";
	ssize_t n;

	close(fd);
	unlink(path);
	memset(big, '\x01', sizeof(big) - 1); /* each byte escapes to 6 */
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
	audit_close(a);
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	unlink(path);

	json_t *r[3] = {NULL, NULL, NULL};
	char *line = buf;
	int lines = 0;
	for (char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1, lines++)
		if (lines < 3)
			r[lines] = json_loadb(line, (size_t)(nl - line), 0, NULL);
	ok(lines == 3 && *line == '\0', "three records, three lines (%d)", lines);
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
	for (int i = 0; i < 3; i++)
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
	test_net();
	test_audit();
	test_audit_hostile();
	test_audit_batch();
	test_readfile();
	return tap_done();
}
