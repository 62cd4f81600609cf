/* tmpdir — remove a test's scratch directory tree (nftw, no shell). */
#ifndef VOUCH_TEST_TMPDIR_H
#define VOUCH_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>

static int tmpdir_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

/* 0, or -1 when something could not be removed. */
static inline int tmpdir_remove(const char *dir)
{
	return nftw(dir, tmpdir_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
