/* vouch trust install|uninstall — the interception CA in the system trust store
 * (Debian's ca-certificates: a PEM file under /usr/local/share/ca-certificates, then
 * update-ca-certificates rebuilds /etc/ssl/certs). Both are idempotent and need root.
 *
 * The CA comes from the running agent (run-info); when vouchd is not reachable, from
 * <stateDir>/intercept-ca.crt of the configuration. It must parse as one X.509
 * certificate before anything is written. */
#include "cli/cli.h"
#include "common/readfile.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TRUST_STORE_DIR "/usr/local/share/ca-certificates"
#define TRUST_FILE TRUST_STORE_DIR "/vouch-intercept.crt"
#define TRUST_UPDATE "update-ca-certificates"
#define TRUST_MAX_CA (64u * 1024)

/* The CA PEM: from vouchd, else from the state directory. *ret is malloc'd. */
static int trust_ca_pem(struct cli *c, char **ret, char *err, size_t err_cap)
{
	char aerr[512] = "", path[4200];
	json_t *req = json_pack("{s:s}", "cmd", "run-info"), *info;
	const char *pem;
	size_t len;
	int r;

	info = cli_admin_call(c->admin_socket, req, aerr, sizeof(aerr));
	json_decref(req);
	pem = info ? json_string_value(json_object_get(info, "ca_pem")) : NULL;
	if (pem) {
		*ret = strdup(pem);
		json_decref(info);
		return *ret ? 0 : -ENOMEM;
	}
	json_decref(info);
	snprintf(path, sizeof(path), "%s/intercept-ca.crt", c->cfg.state_dir);
	r = readfile_path(path, 0, TRUST_MAX_CA, ret, &len);
	if (r < 0)
		snprintf(err, err_cap,
			 "no interception CA: vouchd is not reachable (%s) and %s: %s (has vouchd "
			 "ever run with this configuration?)",
			 aerr[0] ? aerr : "no CA in its answer", path, strerror(-r));
	return r;
}

/* Exactly one PEM certificate (and nothing but PEM around it)? */
static bool is_one_cert(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	X509 *more = x ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	bool okk = x && !more;

	X509_free(x);
	X509_free(more);
	BIO_free(b);
	ERR_clear_error();
	return okk;
}

/* Run update-ca-certificates (PATH lookup), waiting for it. 0, or -1 with a message. */
static int run_update(void)
{
	int st;
	pid_t p;

	fflush(NULL);
	p = fork();
	if (p < 0) {
		fprintf(stderr, "vouch trust: fork: %s\n", strerror(errno));
		return -1;
	}
	if (p == 0) {
		char *argv[] = {TRUST_UPDATE, NULL};
		execvp(argv[0], argv);
		_exit(errno == ENOENT ? 127 : 126);
	}
	while (waitpid(p, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
		fprintf(stderr, "vouch trust: %s not found (install the ca-certificates package)\n",
			TRUST_UPDATE);
	else
		fprintf(stderr, "vouch trust: %s failed (status %d)\n", TRUST_UPDATE,
			WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	return -1;
}

static int trust_install(struct cli *c)
{
	char err[8192] = "", tmp[] = TRUST_STORE_DIR "/.vouch-intercept-XXXXXX", *pem = NULL;
	char *cur = NULL;
	size_t len, cur_len = 0;
	int fd = -1, rc = 1;

	if (trust_ca_pem(c, &pem, err, sizeof(err)) < 0) {
		fprintf(stderr, "vouch trust install: %s\n", err);
		return 1;
	}
	len = strlen(pem);
	if (!is_one_cert(pem)) {
		fprintf(stderr, "vouch trust install: the interception CA is not one PEM "
				"certificate\n");
		goto out;
	}
	if (readfile_path(TRUST_FILE, 0, TRUST_MAX_CA, &cur, &cur_len) == 0 && cur_len == len &&
	    memcmp(cur, pem, len) == 0) {
		printf("%s is already installed\n", TRUST_FILE);
	} else {
		if (mkdir(TRUST_STORE_DIR, 0755) < 0 && errno != EEXIST) {
			fprintf(stderr, "vouch trust install: %s: %s\n", TRUST_STORE_DIR,
				strerror(errno));
			goto out;
		}
		fd = mkostemp(tmp, O_CLOEXEC);
		if (fd < 0 || write(fd, pem, len) != (ssize_t)len || fchmod(fd, 0644) < 0 ||
		    fsync(fd) < 0 || rename(tmp, TRUST_FILE) < 0) {
			fprintf(stderr, "vouch trust install: writing %s: %s\n", TRUST_FILE,
				strerror(errno));
			if (fd >= 0)
				unlink(tmp);
			goto out;
		}
		printf("installed %s\n", TRUST_FILE);
	}
	if (run_update() < 0)
		goto out;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(cur);
	free(pem);
	return rc;
}

static int trust_uninstall(void)
{
	bool removed = unlink(TRUST_FILE) == 0;

	if (!removed && errno != ENOENT) {
		fprintf(stderr, "vouch trust uninstall: %s: %s\n", TRUST_FILE, strerror(errno));
		return 1;
	}
	printf(removed ? "removed %s\n" : "%s is not installed\n", TRUST_FILE);
	/* Also when nothing was removed: a previous uninstall may have been interrupted
	 * before the store was rebuilt. */
	return run_update() < 0 ? 1 : 0;
}

int cli_trust(struct cli *c, int argc, char **argv)
{
	bool install;

	if (argc != 1 || (strcmp(argv[0], "install") != 0 && strcmp(argv[0], "uninstall") != 0)) {
		fprintf(stderr, "usage: vouch trust install|uninstall\n");
		return 2;
	}
	install = strcmp(argv[0], "install") == 0;
	if (geteuid() != 0) {
		fprintf(stderr, "vouch trust %s: must run as root (it %s %s and runs %s)\n",
			argv[0], install ? "writes" : "removes", TRUST_FILE, TRUST_UPDATE);
		return 1;
	}
	return install ? trust_install(c) : trust_uninstall();
}
