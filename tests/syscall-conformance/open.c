/*
 * open: open, openat, close and the flags O_NOFOLLOW, O_DIRECTORY, O_CLOEXEC.
 *
 * Success paths: absolute and relative paths, openat against AT_FDCWD and a
 * directory fd (and an absolute path ignoring even a bad dirfd), the
 * lowest-free-fd rule, relative/absolute/".."-using symlinks, a chain of
 * exactly 40 symlinks, ".." clamped at "/", O_CLOEXEC setting FD_CLOEXEC.
 * Errno paths: ENOENT (missing, empty path, dangling symlink), ENOTDIR
 * (file used as a directory, O_DIRECTORY on a file or on a symlink with
 * O_NOFOLLOW, file dirfd), EBADF (bad dirfd, double close), EFAULT (bad path
 * pointer), ELOOP (O_NOFOLLOW on a symlink, symlink loops, 41 symlinks),
 * EISDIR (a directory opened for writing), EEXIST (O_CREAT|O_EXCL on an
 * existing file), ENAMETOOLONG (a 256-byte component, a PATH_MAX path).
 * Nothing is created or written.
 */
#include "tap.h"
#include "fixtures.h"
#include <fcntl.h>
#include <limits.h>

/* Read the whole (small) file behind fd and compare it with `want`. */
static int content_is(int fd, const char *want)
{
	char buf[128];
	ssize_t n = read(fd, buf, sizeof(buf));

	return n == (ssize_t)strlen(want) && memcmp(buf, want, n) == 0;
}

int main(void)
{
	static char longpath[PATH_MAX + 16];
	char name256[300];
	int fd, fd2, fd3, dirfd, filefd;

	tap_plan(62);

	/* open, close, the lowest free fd */
	fd = check_ok(open("/fixtures/file.txt", O_RDONLY), "open an absolute path");
	check(content_is(fd, FILE_TXT), "the fd reads the file's content");
	fd2 = check_ok(open("/fixtures/empty", O_RDONLY), "open a second file");
	check(fd2 > fd, "the second fd is higher");
	check_eq(close(fd), 0, "close the first fd");
	fd3 = check_ok(open("/fixtures/secret", O_RDONLY), "open a 0600 file (as root)");
	check_eq(fd3, fd, "open reuses the lowest free fd");
	check_errno(close(fd2 + 100), EBADF, "close an fd never opened is EBADF");
	check_eq(close(fd2), 0, "close the second fd");
	check_errno(close(fd2), EBADF, "close it again is EBADF");
	check_errno(close(-1), EBADF, "close -1 is EBADF");
	close(fd3);
	fd = check_ok(open("fixtures/file.txt", O_RDONLY), "open a path relative to the cwd /");
	close(fd);

	/* openat */
	dirfd = check_ok(open("/fixtures", O_RDONLY | O_DIRECTORY), "open /fixtures O_DIRECTORY");
	fd = check_ok(openat(dirfd, "file.txt", O_RDONLY), "openat relative to a dirfd");
	check(content_is(fd, FILE_TXT), "openat dirfd-relative opens the right file");
	close(fd);
	fd = check_ok(openat(AT_FDCWD, "fixtures/dir/alpha", O_RDONLY), "openat AT_FDCWD");
	check(content_is(fd, "A\n"), "openat AT_FDCWD opens the right file");
	close(fd);
	fd = check_ok(openat(-1, "/fixtures/dir/beta", O_RDONLY), "openat ignores a bad dirfd for an absolute path");
	close(fd);
	check_errno(openat(-1, "file.txt", O_RDONLY), EBADF, "openat dirfd -1 with a relative path is EBADF");
	check_errno(openat(9999, "file.txt", O_RDONLY), EBADF, "openat dirfd 9999 is EBADF");
	filefd = check_ok(openat(dirfd, "dir/alpha", O_RDONLY), "openat a two-component relative path");
	check_errno(openat(filefd, "x", O_RDONLY), ENOTDIR, "openat with a file as dirfd is ENOTDIR");
	close(filefd);

	/* missing paths and bad pointers */
	check_errno(open("/fixtures/nope", O_RDONLY), ENOENT, "open a missing file is ENOENT");
	check_errno(open("/nope/file.txt", O_RDONLY), ENOENT, "open under a missing directory is ENOENT");
	check_errno(open("", O_RDONLY), ENOENT, "open an empty path is ENOENT");
	check_errno(open("/fixtures/file.txt/x", O_RDONLY), ENOTDIR, "open under a regular file is ENOTDIR");
	check_errno(open("/fixtures/file.txt/", O_RDONLY), ENOTDIR, "open a file with a trailing slash is ENOTDIR");
	check_errno(open(BAD_PTR, O_RDONLY), EFAULT, "open a bad path pointer is EFAULT");

	/* symlinks */
	fd = check_ok(open("/fixtures/link-rel", O_RDONLY), "open a relative symlink");
	check(content_is(fd, FILE_TXT), "the relative symlink leads to file.txt");
	close(fd);
	fd = check_ok(open("/fixtures/link-abs", O_RDONLY), "open an absolute symlink");
	check(content_is(fd, FILE_TXT), "the absolute symlink leads to file.txt");
	close(fd);
	fd = check_ok(openat(dirfd, "link-up", O_RDONLY), "openat a symlink whose target uses ..");
	check(content_is(fd, FILE_TXT), "the .. symlink leads to file.txt");
	close(fd);
	fd = check_ok(open("/fixtures/link-dir/alpha", O_RDONLY | O_NOFOLLOW),
		      "O_NOFOLLOW only concerns the last component");
	close(fd);
	check_errno(open("/fixtures/link-rel", O_RDONLY | O_NOFOLLOW), ELOOP, "O_NOFOLLOW on a symlink is ELOOP");
	fd = check_ok(open("/fixtures/link-dir/", O_RDONLY | O_NOFOLLOW), "a trailing slash overrides O_NOFOLLOW");
	close(fd);
	check_errno(open("/fixtures/dangling", O_RDONLY | O_NOFOLLOW), ELOOP,
		    "O_NOFOLLOW on a dangling symlink is ELOOP");
	check_errno(open("/fixtures/dangling", O_RDONLY), ENOENT, "open a dangling symlink is ENOENT");
	check_errno(open("/fixtures/loop-a", O_RDONLY), ELOOP, "open a two-symlink loop is ELOOP");
	check_errno(open("/fixtures/self-loop", O_RDONLY), ELOOP, "open a self-referencing symlink is ELOOP");
	check_errno(open("/fixtures/loop-a/x", O_RDONLY), ELOOP, "a loop in a middle component is ELOOP");
	fd = check_ok(open("/fixtures/chain/l1", O_RDONLY), "a chain of 40 symlinks resolves");
	check(content_is(fd, FILE_TXT), "the 40-symlink chain leads to file.txt");
	close(fd);
	check_errno(open("/fixtures/chain/l0", O_RDONLY), ELOOP, "a chain of 41 symlinks is ELOOP");

	/* .. */
	fd = check_ok(open("/fixtures/link-gamma/../alpha", O_RDONLY), ".. after a symlink is the target's parent");
	check(content_is(fd, "A\n"), "link-gamma/../alpha is dir/alpha (physical, not lexical, ..)");
	close(fd);
	fd = check_ok(open("/../../fixtures/../fixtures/./file.txt", O_RDONLY), ".. at / stays at /");
	check(content_is(fd, FILE_TXT), ".. and . resolve to file.txt");
	close(fd);

	/* O_DIRECTORY and directories */
	fd = check_ok(open("/fixtures/link-dir", O_RDONLY | O_DIRECTORY), "O_DIRECTORY follows a symlink to a directory");
	close(fd);
	check_errno(open("/fixtures/file.txt", O_RDONLY | O_DIRECTORY), ENOTDIR, "O_DIRECTORY on a file is ENOTDIR");
	check_errno(open("/fixtures/link-dir", O_RDONLY | O_DIRECTORY | O_NOFOLLOW), ENOTDIR,
		    "O_DIRECTORY|O_NOFOLLOW on a symlink is ENOTDIR");
	check_errno(open("/fixtures/dir", O_WRONLY), EISDIR, "open a directory O_WRONLY is EISDIR");
	check_errno(open("/fixtures/dir", O_RDWR), EISDIR, "open a directory O_RDWR is EISDIR");
	check_errno(open("/fixtures/file.txt", O_RDONLY | O_CREAT | O_EXCL, 0644), EEXIST,
		    "O_CREAT|O_EXCL on an existing file is EEXIST");

	/* O_CLOEXEC */
	fd = check_ok(open("/fixtures/file.txt", O_RDONLY | O_CLOEXEC), "open O_CLOEXEC");
	check_eq(fcntl(fd, F_GETFD), FD_CLOEXEC, "O_CLOEXEC sets FD_CLOEXEC");
	close(fd);
	fd = check_ok(open("/fixtures/file.txt", O_RDONLY), "open without O_CLOEXEC");
	check_eq(fcntl(fd, F_GETFD), 0, "without O_CLOEXEC FD_CLOEXEC is clear");
	close(fd);

	/* ENAMETOOLONG */
	memset(name256, 'n', 256);
	name256[256] = '\0';
	check_errno(openat(dirfd, name256, O_RDONLY), ENAMETOOLONG, "a 256-byte component is ENAMETOOLONG");
	strcpy(longpath, "/fixtures");
	while (strlen(longpath) < PATH_MAX)
		strcat(longpath, "/.");
	check_errno(open(longpath, O_RDONLY), ENAMETOOLONG, "a path of PATH_MAX bytes is ENAMETOOLONG");
	longpath[PATH_MAX - 1] = '\0';
	if (longpath[PATH_MAX - 2] == '/')
		longpath[PATH_MAX - 2] = '.';
	fd = check_ok(open(longpath, O_RDONLY), "a path of PATH_MAX-1 bytes is accepted");
	close(fd);

	close(dirfd);
	return tap_done();
}
