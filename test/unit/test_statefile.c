/* Unit tests for src/common/statefile: the crash-safe write order (write, fsync, rename,
 * directory fsync), what a failure at each step leaves behind, stale temp files and
 * planted symlinks, and moving a corrupt file aside. */
#include "common/readfile.h"
#include "common/statefile.h"
#include "tap.h"
#include "tmpdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64], path[128], tmp[160];
static enum statefile_step steps[16];
static int n_steps, fail_at = -1;
static bool tmp_full_at_rename, old_intact_at_rename;

static bool content_is(const char *p, const char *want)
{
	char *buf = NULL;
	size_t len = 0;
	bool same;

	if (readfile_path(p, O_NOFOLLOW, 1 << 20, &buf, &len) < 0)
		return false;
	same = len == strlen(want) && memcmp(buf, want, len) == 0;
	free(buf);
	return same;
}

static int hook(enum statefile_step s, const char *tmp_path)
{
	if (n_steps < 16)
		steps[n_steps++] = s;
	if (s == STATEFILE_RENAME) {
		/* the invariant a crash relies on: the new data is complete (and synced) in the
		 * temp file while the target still holds the old data */
		tmp_full_at_rename = content_is(tmp_path, "new contents");
		old_intact_at_rename = content_is(path, "old contents");
	}
	return (int)s == fail_at ? -EIO : 0;
}

int main(void)
{
	struct stat st;

	snprintf(dir, sizeof(dir), "/tmp/vouch-statefile-XXXXXX");
	ok(mkdtemp(dir) != NULL, "scratch dir");
	snprintf(path, sizeof(path), "%s/state.json", dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);

	ok(statefile_write(path, "old contents", 12, 0600) == 0 && content_is(path, "old contents"),
	   "first write");
	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "mode 0600");

	statefile_test_hook = hook;
	n_steps = 0;
	ok(statefile_write(path, "new contents", 12, 0600) == 0 && content_is(path, "new contents"),
	   "replace");
	ok(n_steps == 5 && steps[0] == STATEFILE_OPEN_TMP && steps[1] == STATEFILE_WRITE &&
	       steps[2] == STATEFILE_FSYNC && steps[3] == STATEFILE_RENAME &&
	       steps[4] == STATEFILE_FSYNC_DIR,
	   "order: temp file, write, fsync, rename, directory fsync (%d steps)", n_steps);
	ok(tmp_full_at_rename && old_intact_at_rename,
	   "at the rename the temp file is complete and the target still old");
	ok(access(tmp, F_OK) < 0 && errno == ENOENT, "no temp file left");

	/* a failure (or a crash) before the rename leaves the old file */
	statefile_write(path, "old contents", 12, 0600);
	for (int s = STATEFILE_OPEN_TMP; s <= STATEFILE_RENAME; s++) {
		fail_at = s;
		int r = statefile_write(path, "new contents", 12, 0600);
		ok(r == -EIO && content_is(path, "old contents") && access(tmp, F_OK) < 0,
		   "failure at step %d: error, old file intact, temp removed (r=%d)", s, r);
	}
	fail_at = STATEFILE_FSYNC_DIR;
	ok(statefile_write(path, "new contents", 12, 0600) == -EIO &&
	       content_is(path, "new contents"),
	   "failure of the directory fsync: reported, new file in place");
	fail_at = -1;
	statefile_test_hook = NULL;

	/* a temp file left by a crash, and a symlink planted at the temp name */
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ok(fd >= 0 && write(fd, "half", 4) == 4, "stale temp file");
	close(fd);
	ok(statefile_write(path, "after crash", 11, 0600) == 0 && content_is(path, "after crash") &&
	       access(tmp, F_OK) < 0,
	   "the next write replaces it");
	char victim[160];
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	fd = open(victim, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ok(fd >= 0 && write(fd, "victim", 6) == 6, "victim file");
	close(fd);
	ok(symlink(victim, tmp) == 0, "symlink at the temp name");
	ok(statefile_write(path, "safe", 4, 0600) == 0 && content_is(victim, "victim") &&
	       content_is(path, "safe"),
	   "the symlink is removed, never written through");
	ok(statefile_write("/nonexistent-dir/x/state.json", "x", 1, 0600) == -ENOENT,
	   "missing directory: -ENOENT");

	/* quarantine */
	char moved[256] = "", moved2[256] = "";
	ok(statefile_quarantine(path, moved, sizeof(moved)) == 0 && access(path, F_OK) < 0 &&
	       content_is(moved, "safe") && strstr(moved, "state.json.corrupt-"),
	   "moved aside to %s", moved);
	statefile_write(path, "second", 6, 0600);
	ok(statefile_quarantine(path, moved2, sizeof(moved2)) == 0 && strcmp(moved, moved2) != 0 &&
	       content_is(moved2, "second") && content_is(moved, "safe"),
	   "a second one in the same second does not replace the first (%s)", moved2);
	ok(statefile_quarantine(path, NULL, 0) == -ENOENT, "nothing to move: -ENOENT");

	ok(tmpdir_remove(dir) == 0, "cleanup");
	return tap_done();
}
