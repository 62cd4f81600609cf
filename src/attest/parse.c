/* parse — the /proc text formats attestation reads (proc(5)), and the cgroup path
 * conventions of systemd and container runtimes. Pure functions over bounded buffers. */
#include "attest/attest.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* Decimal digits only (no sign, no space), at most 20 of them, no overflow. */
static int parse_u64(const char *s, size_t n, uint64_t *ret)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

int attest_parse_stat(const char *buf, size_t len, char ret_name[static 64], pid_t *ret_ppid,
		      uint64_t *ret_start_time)
{
	const char *lp = memchr(buf, '(', len), *rp = NULL, *p, *end = buf + len;
	uint64_t ppid = 0, start = 0;
	size_t nlen;

	for (size_t i = len; i > 0; i--)
		if (buf[i - 1] == ')') {
			rp = buf + i - 1;
			break;
		}
	if (!lp || !rp || rp < lp)
		return -EINVAL;
	nlen = (size_t)(rp - lp - 1);
	if (nlen >= 64)
		return -ENAMETOOLONG;
	if (memchr(lp + 1, '\0', nlen))
		return -EINVAL;
	/* After ')' come fields 3.. separated by single spaces: state, ppid (4), ...,
	 * starttime (22). Fields after ')' are numbers or the state letter, never ')'. */
	p = rp + 1;
	for (unsigned field = 3; field <= 22; field++) {
		const char *tok;
		if (p >= end || *p != ' ')
			return -EINVAL;
		tok = ++p;
		while (p < end && *p != ' ' && *p != '\n')
			p++;
		if (p == tok)
			return -EINVAL;
		if (field == 4 && parse_u64(tok, (size_t)(p - tok), &ppid) < 0)
			return -EINVAL;
		if (field == 22 && parse_u64(tok, (size_t)(p - tok), &start) < 0)
			return -EINVAL;
	}
	if (ppid > INT32_MAX)
		return -EINVAL;
	memcpy(ret_name, lp + 1, nlen);
	ret_name[nlen] = '\0';
	if (ret_ppid)
		*ret_ppid = (pid_t)ppid;
	*ret_start_time = start;
	return 0;
}

int attest_parse_ids(const char *buf, size_t len, const char *tag, uint32_t ret_ids[static 4])
{
	size_t tlen = strlen(tag), i = 0;

	while (i < len) {
		const char *line = buf + i, *nl = memchr(line, '\n', len - i);
		if (!nl)
			return -ENOENT; /* an incomplete last line is never used */
		size_t llen = (size_t)(nl - line);
		i += llen + 1;
		if (llen < tlen || memcmp(line, tag, tlen) != 0)
			continue;
		/* "Uid:\t1000\t1000\t1000\t1000" — exactly four ids. */
		uint32_t ids[4];
		const char *p = line + tlen;
		for (int k = 0; k < 4; k++) {
			const char *tok;
			uint64_t v;
			if (p >= nl || (*p != '\t' && *p != ' '))
				return -EINVAL;
			while (p < nl && (*p == '\t' || *p == ' '))
				p++;
			tok = p;
			while (p < nl && *p != '\t' && *p != ' ')
				p++;
			if (parse_u64(tok, (size_t)(p - tok), &v) < 0 || v > UINT32_MAX)
				return -EINVAL;
			ids[k] = (uint32_t)v;
		}
		while (p < nl && (*p == '\t' || *p == ' '))
			p++;
		if (p != nl)
			return -EINVAL;
		memcpy(ret_ids, ids, sizeof(ids));
		return 0;
	}
	return -ENOENT;
}

int attest_parse_cgroup_file(const char *buf, size_t len, char ret_path[static ATTEST_PATH_MAX])
{
	const char *found = NULL;
	size_t flen = 0, i = 0;

	if (memchr(buf, '\0', len))
		return -EINVAL;
	while (i < len) {
		const char *line = buf + i, *nl = memchr(line, '\n', len - i);
		if (!nl)
			return -EINVAL; /* the kernel ends every line; a partial one is a truncation */
		size_t llen = (size_t)(nl - line);
		i += llen + 1;
		if (llen < 3 || memcmp(line, "0::", 3) != 0)
			continue;
		/* cgroup names cannot hold '\n' (cgroup_mkdir), so a second "0::" line means
		 * the input is not what the kernel wrote: refuse rather than pick one. */
		if (found)
			return -EINVAL;
		found = line + 3;
		flen = llen - 3;
	}
	if (!found)
		return -ENOENT;
	if (flen == 0 || found[0] != '/')
		return -EINVAL;
	if (flen >= ATTEST_PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(ret_path, found, flen);
	ret_path[flen] = '\0';
	return 0;
}

static bool is_hex64(const char *s, size_t n)
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool has_suffix(const char *s, size_t n, const char *suf)
{
	size_t sl = strlen(suf);
	return n > sl && memcmp(s + n - sl, suf, sl) == 0;
}

/* The 64-hex id of one cgroup path component, or NULL. Scope names of the runtimes:
 * docker-<id>.scope (docker, systemd driver), cri-containerd-<id>.scope (containerd),
 * crio-<id>.scope (CRI-O), libpod-<id>.scope (podman); bare <id> for cgroupfs drivers
 * (/docker/<id>, /kubepods/.../pod<uid>/<id>). "crio-conmon-<id>.scope" and
 * "libpod-conmon-<id>.scope" hold the monitor, not the container: the length check
 * below leaves them out. */
static const char *component_container_id(const char *s, size_t n)
{
	static const char *const prefixes[] = {"docker-", "cri-containerd-", "crio-", "libpod-"};

	if (is_hex64(s, n))
		return s;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t pl = strlen(prefixes[i]);
		if (n == pl + 64 + strlen(".scope") && memcmp(s, prefixes[i], pl) == 0 &&
		    has_suffix(s, n, ".scope") && is_hex64(s + pl, 64))
			return s + pl;
	}
	return NULL;
}

void attest_parse_cgroup(const char *path, char ret_unit[static 256],
			 char ret_container_id[static 65])
{
	const char *p = path;

	ret_unit[0] = '\0';
	ret_container_id[0] = '\0';
	while (*p) {
		const char *c = p, *id;
		size_t n;
		while (*p && *p != '/')
			p++;
		n = (size_t)(p - c);
		if (*p == '/')
			p++;
		if (n == 0)
			continue;
		if (n < 256 && (has_suffix(c, n, ".service") || has_suffix(c, n, ".scope"))) {
			memcpy(ret_unit, c, n);
			ret_unit[n] = '\0';
		}
		id = component_container_id(c, n);
		if (id) {
			memcpy(ret_container_id, id, 64);
			ret_container_id[64] = '\0';
		}
	}
}
