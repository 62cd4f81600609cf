/* confine — capability sets and no_new_privs (contract in confine.h). */
#include "common/confine.h"

#include <errno.h>
#include <linux/capability.h>
#include <sys/capability.h>
#include <sys/prctl.h>

int confine_caps(const int *keep, size_t n)
{
	cap_t have = cap_get_proc(), want = cap_init();
	cap_value_t v[CAP_LAST_CAP + 1];
	size_t nv = 0;
	int r = 0;

	if (!have || !want) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		cap_flag_value_t held = CAP_CLEAR;
		if (keep[i] < 0 || keep[i] > CAP_LAST_CAP) {
			r = -EINVAL;
			goto out;
		}
		if (cap_get_flag(have, keep[i], CAP_PERMITTED, &held) == 0 && held == CAP_SET)
			v[nv++] = keep[i];
	}
	if (nv && (cap_set_flag(want, CAP_PERMITTED, (int)nv, v, CAP_SET) < 0 ||
		   cap_set_flag(want, CAP_EFFECTIVE, (int)nv, v, CAP_SET) < 0)) {
		r = -errno;
		goto out;
	}
	/* The bounding set first (dropping from it needs CAP_SETPCAP, still held). */
	for (int c = 0; c <= CAP_LAST_CAP && cap_valid(c); c++) {
		bool kept = false;
		for (size_t i = 0; i < nv; i++)
			kept |= v[i] == c;
		if (!kept && CAP_IS_SUPPORTED(c) && cap_get_bound(c) == 1 &&
		    cap_drop_bound(c) < 0 && errno != EPERM) {
			r = -errno;
			goto out;
		}
	}
	if (CAP_AMBIENT_SUPPORTED() && cap_reset_ambient() < 0 && errno != EPERM) {
		r = -errno;
		goto out;
	}
	if (cap_set_proc(want) < 0)
		r = -errno;
out:
	cap_free(have);
	cap_free(want);
	return r;
}

int confine_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0; }

uint64_t confine_cap_eff(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {0};

	if (capget(&h, d) < 0)
		return 0;
	return (uint64_t)d[0].effective | (uint64_t)d[1].effective << 32;
}
