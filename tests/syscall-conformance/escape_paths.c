/*
 * escape_paths: no path leads above the root.
 *
 * Natively this runs under chroot(2), whose root clamps `..` exactly as the
 * sandbox's root must: `..` of `/` is `/`, however it is reached (a path,
 * a directory fd, the cwd, a symlink whose target climbs).  Each check
 * compares what a climbing path reaches with what the plain path inside
 * the root reaches (same st_dev/st_ino, same bytes).  tests/test_security.py
 * does the same against a canary file placed outside the rootfs.
 */
#include "tap.h"
#include "fixtures.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

/* Same inode as `/`? */
static int is_root(const struct stat *root, const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return 0;
	return st.st_dev == root->st_dev && st.st_ino == root->st_ino;
}

static int fd_is_root(const struct stat *root, int fd)
{
	struct stat st;

	if (fd < 0 || fstat(fd, &st) != 0)
		return 0;
	return st.st_dev == root->st_dev && st.st_ino == root->st_ino;
}

/* The whole content of `path` (relative to dirfd), or -1. */
static ssize_t slurp(int dirfd, const char *path, char *buf, size_t size)
{
	int fd = openat(dirfd, path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, size);
	close(fd);
	return n;
}

/* Sorted-independent count of entries, and whether NAME is among them. */
static int count_entries(const char *path, const char *name, int *has)
{
	char buf[8192];
	int fd = open(path, O_RDONLY | O_DIRECTORY);
	int count = 0;
	long n;

	*has = 0;
	if (fd < 0)
		return -1;
	while ((n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			count++;
			if (strcmp(d->d_name, name) == 0)
				*has = 1;
			off += d->d_reclen;
		}
	}
	close(fd);
	return n < 0 ? -1 : count;
}

int main(void)
{
	struct stat root, st;
	char want[4096], got[4096], cwd[4096];
	ssize_t wlen, glen;
	int rootfd, fixfd, fd, has, n_root, n_up;

	tap_plan(25);
	check_ok(stat("/", &root), "stat /");
	rootfd = check_ok(open("/", O_RDONLY | O_DIRECTORY), "open / as a directory");
	fixfd = check_ok(open("/fixtures", O_RDONLY | O_DIRECTORY), "open /fixtures as a directory");

	/* `..` in paths */
	check(is_root(&root, "/.."), "/.. is /");
	check(is_root(&root, "/../../../../.."), "/../../../../.. is /");
	check(is_root(&root, "/fixtures/../../.."), "/fixtures/../../.. is /");
	check(is_root(&root, "/fixtures/dir/gamma/../../../../../.."), "a deep path climbing past / ends at /");
	wlen = slurp(AT_FDCWD, "/etc/passwd", want, sizeof(want));
	check(wlen > 0, "read /etc/passwd");
	glen = slurp(AT_FDCWD, "/../../../etc/passwd", got, sizeof(got));
	check(glen == wlen && memcmp(got, want, (size_t)wlen) == 0, "/../../../etc/passwd is the root's /etc/passwd");
	glen = slurp(AT_FDCWD, "/fixtures/../../../../fixtures/file.txt", got, sizeof(got));
	check(glen == FILE_LEN && memcmp(got, FILE_TXT, FILE_LEN) == 0, "/fixtures/../../../../fixtures/file.txt is file.txt");

	/* `..` through symlinks */
	check(is_root(&root, "/fixtures/link-gamma/../../../../.."),
	      "link-gamma/.. then climbing past / ends at /");
	glen = slurp(AT_FDCWD, "/fixtures/link-gamma/../../../../../fixtures/file.txt", got, sizeof(got));
	check(glen == FILE_LEN && memcmp(got, FILE_TXT, FILE_LEN) == 0, "a symlink, then .. past /, then down: file.txt");
	glen = slurp(AT_FDCWD, "/fixtures/link-dir/../../../etc/passwd", got, sizeof(got));
	check(glen == wlen && memcmp(got, want, (size_t)wlen) == 0, "link-dir/../../../etc/passwd is the root's");
	check_errno(stat("/fixtures/link-abs/../../../..", &st), ENOTDIR, "a file symlink, then ..: ENOTDIR, no climbing");

	/* `..` through directory fds */
	fd = openat(rootfd, "..", O_RDONLY | O_DIRECTORY);
	check(fd_is_root(&root, fd), "openat(/, \"..\") is /");
	if (fd >= 0)
		close(fd);
	fd = openat(fixfd, "../../../..", O_RDONLY | O_DIRECTORY);
	check(fd_is_root(&root, fd), "openat(/fixtures, \"../../../..\") is /");
	if (fd >= 0)
		close(fd);
	glen = slurp(fixfd, "../../../etc/passwd", got, sizeof(got));
	check(glen == wlen && memcmp(got, want, (size_t)wlen) == 0, "openat(/fixtures, \"../../../etc/passwd\") is the root's");
	check_eq(syscall(SYS_faccessat, rootfd, "../../etc/passwd", R_OK), 0, "faccessat(/, \"../../etc/passwd\")");

	/* `..` through the cwd */
	check_ok(chdir("/fixtures/dir"), "chdir /fixtures/dir");
	check_ok(chdir("../../../../.."), "chdir ../../../../..");
	check_str(getcwd(cwd, sizeof(cwd)), "/", "the cwd is then /");
	check_ok(fchdir(rootfd), "fchdir(/)");
	check_ok(chdir(".."), "chdir ..");
	check_str(getcwd(cwd, sizeof(cwd)), "/", "the cwd is still /");

	/* Listing above the root lists the root */
	n_root = count_entries("/", "fixtures", &has);
	n_up = count_entries("/../..", "fixtures", &has);
	check(n_root > 0 && n_up == n_root && has, "getdents64 of /../.. lists / (%d entries, /fixtures among them)", n_root);

	return tap_done();
}
