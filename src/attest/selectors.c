#include "attest/attest.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* The selector keys attestation can evaluate (issue 2 §3). Kept in one table so resource
 * validation and matching agree on the vocabulary. */
enum sel_key {
	SEL_UID,
	SEL_GID,
	SEL_NAME,
	SEL_BIN_PATH,
	SEL_BIN_SHA256,
	SEL_UNIT,
	SEL_CGROUP,
	SEL_CONTAINER,
	SEL_UNKNOWN,
};

static const char *const known_keys[] = {
    [SEL_UID] = "process:uid",
    [SEL_GID] = "process:gid",
    [SEL_NAME] = "process:name",
    [SEL_BIN_PATH] = "process:binary:path",
    [SEL_BIN_SHA256] = "process:binary:sha256",
    [SEL_UNIT] = "systemd:unit",
    [SEL_CGROUP] = "cgroup:path",
    [SEL_CONTAINER] = "container:id",
};

static enum sel_key key_of(const char *key)
{
	for (size_t i = 0; i < sizeof(known_keys) / sizeof(known_keys[0]); i++)
		if (strcmp(key, known_keys[i]) == 0)
			return (enum sel_key)i;
	return SEL_UNKNOWN;
}

bool attest_known_selector(const char *key)
{
	return key && key_of(key) != SEL_UNKNOWN;
}

/* A uid or gid as the resource wrote it: decimal, no sign, no leading zero (YAML 1.1
 * would read 01000 as octal), below (uid_t)-1, which the kernel never assigns. */
static bool parse_id(const char *s, uint32_t *ret)
{
	uint64_t v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 10 || (s[0] == '0' && n > 1))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v >= UINT32_MAX)
		return false;
	*ret = (uint32_t)v;
	return true;
}

static bool is_hex64(const char *s)
{
	size_t n = strlen(s);

	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
		      (s[i] >= 'A' && s[i] <= 'F')))
			return false;
	return true;
}

/* fact is value, or lies below it: "/a/b" holds for "/a/b" and "/a/b/c", not "/a/bc".
 * Trailing slashes of value are ignored; "/" holds for every absolute path. */
static bool cgroup_under(const char *fact, const char *value)
{
	size_t n = strlen(value);

	if (n == 0 || value[0] != '/' || fact[0] != '/')
		return false;
	while (n > 1 && value[n - 1] == '/')
		n--;
	if (n == 1)
		return true;
	return strncmp(fact, value, n) == 0 && (fact[n] == '\0' || fact[n] == '/');
}

/* One entry. An empty fact never matches, whatever the value. */
static bool match_one(const struct res_kv *kv, const struct attest_facts *f)
{
	uint32_t id;

	if (!kv->key || !kv->value)
		return false;
	switch (key_of(kv->key)) {
	case SEL_UID:
		return parse_id(kv->value, &id) && id == (uint32_t)f->uid;
	case SEL_GID:
		return parse_id(kv->value, &id) && id == (uint32_t)f->gid;
	case SEL_NAME:
		return f->name[0] && strcmp(kv->value, f->name) == 0;
	case SEL_BIN_PATH:
		return f->exe[0] && strcmp(kv->value, f->exe) == 0;
	case SEL_BIN_SHA256:
		return f->exe_sha256[0] && is_hex64(kv->value) &&
		       strcasecmp(kv->value, f->exe_sha256) == 0;
	case SEL_UNIT:
		return f->systemd_unit[0] && strcmp(kv->value, f->systemd_unit) == 0;
	case SEL_CGROUP:
		return f->cgroup[0] && cgroup_under(f->cgroup, kv->value);
	case SEL_CONTAINER:
		return f->container_id[0] && is_hex64(kv->value) &&
		       strcasecmp(kv->value, f->container_id) == 0;
	case SEL_UNKNOWN:
		break;
	}
	return false;
}

bool attest_match_map(const struct res_selector_map *m, const struct attest_facts *f,
		      const char **ret_why)
{
	if (!m || m->n == 0) {
		if (ret_why)
			*ret_why = NULL;
		return false; /* no constraint is not a reason to trust */
	}
	for (size_t i = 0; i < m->n; i++)
		if (!match_one(&m->kv[i], f)) {
			if (ret_why)
				*ret_why = m->kv[i].key;
			return false;
		}
	return true;
}

bool attest_match(const struct res_selectors *s, const struct attest_facts *f)
{
	if (!s)
		return false;
	for (size_t i = 0; i < s->n; i++)
		if (attest_match_map(&s->maps[i], f, NULL))
			return true;
	return false;
}

const struct res_workload *attest_find_workload(const struct resource_set *set,
						const struct attest_facts *f)
{
	if (!set)
		return NULL;
	for (size_t i = 0; i < set->n_workloads; i++)
		if (attest_match(&set->workloads[i].selectors, f))
			return &set->workloads[i];
	return NULL;
}

bool attest_selector_valid(const char *key, const char *value, const char **ret_why)
{
	const char *why = NULL;
	uint32_t id;

	if (!key || !value) {
		why = "missing key or value";
		goto out;
	}
	switch (key_of(key)) {
	case SEL_UID:
		if (!parse_id(value, &id))
			why = "must be a decimal uid (user names are not resolved)";
		break;
	case SEL_GID:
		if (!parse_id(value, &id))
			why = "must be a decimal gid (group names are not resolved)";
		break;
	case SEL_NAME:
		if (value[0] == '\0' || strlen(value) > 15)
			why = "must be a process name of 1 to 15 bytes (the kernel's comm)";
		break;
	case SEL_BIN_PATH:
		if (value[0] != '/')
			why = "must be an absolute path";
		break;
	case SEL_BIN_SHA256:
		if (!is_hex64(value))
			why = "must be 64 hex digits";
		break;
	case SEL_UNIT:
		if (value[0] == '\0' || strchr(value, '/'))
			why = "must be a unit name such as foo.service";
		break;
	case SEL_CGROUP:
		if (value[0] != '/')
			why = "must be an absolute cgroup path";
		break;
	case SEL_CONTAINER:
		if (!is_hex64(value))
			why = "must be the full 64-hex container id";
		break;
	case SEL_UNKNOWN:
		why = "unknown selector key";
		break;
	}
out:
	if (why && ret_why)
		*ret_why = why;
	return why == NULL;
}
