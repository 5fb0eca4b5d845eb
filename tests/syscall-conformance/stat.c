/*
 * stat: fstat, stat, lstat, newfstatat, statx (all as raw syscalls, so that
 * libc cannot route one through another).
 *
 * Success paths: type, permission bits, size, link count, owner and the
 * fixed nanosecond mtime of the /fixtures files; stat following and lstat
 * not following symlinks (a symlink's size is its target's length); the
 * same inode seen through a path, a symlink, an fd, a dirfd and
 * AT_EMPTY_PATH; a trailing slash forcing a symlink to be followed;
 * /dev/null as a character device 1:3; statx agreeing with stat.
 * Errno paths: ENOENT, ENOTDIR, ELOOP, EFAULT (bad path, bad buffer),
 * EBADF (bad fd, bad dirfd), EINVAL (bad flags, reserved statx mask bit,
 * both AT_STATX_FORCE_SYNC and AT_STATX_DONT_SYNC).
 */
#include "tap.h"
#include "fixtures.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static long sys_stat(const char *p, struct stat *st) { return syscall(SYS_stat, p, st); }
static long sys_lstat(const char *p, struct stat *st) { return syscall(SYS_lstat, p, st); }
static long sys_fstat(int fd, struct stat *st) { return syscall(SYS_fstat, fd, st); }
static long sys_fstatat(int dfd, const char *p, struct stat *st, int fl)
{
	return syscall(SYS_newfstatat, dfd, p, st, fl);
}
static long sys_statx(int dfd, const char *p, int fl, unsigned mask, struct statx *stx)
{
	return syscall(SYS_statx, dfd, p, fl, mask, stx);
}

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev;
}

int main(void)
{
	struct stat st, file_st, dir_st, root_st;
	struct statx stx;
	int fd, dirfd, closedfd;

	tap_plan(81);

	/* stat */
	check_ok(sys_stat("/fixtures/file.txt", &file_st), "stat file.txt");
	check(S_ISREG(file_st.st_mode), "file.txt is a regular file");
	check_eq(file_st.st_mode & 07777, 0644, "file.txt has mode 0644");
	check_eq(file_st.st_size, FILE_LEN, "file.txt has size 37");
	check_eq(file_st.st_nlink, 1, "file.txt has one link");
	check(file_st.st_uid == 0 && file_st.st_gid == 0, "file.txt is owned by 0:0");
	check_eq(file_st.st_mtim.tv_sec, FILE_MTIME_SEC, "file.txt mtime seconds");
	check_eq(file_st.st_mtim.tv_nsec, FILE_MTIME_NSEC, "file.txt mtime nanoseconds");
	check_ok(sys_stat("/fixtures/empty", &st), "stat an empty file");
	check_eq(st.st_size, 0, "the empty file has size 0");
	check_ok(sys_stat("/fixtures/secret", &st), "stat a 0600 file");
	check_eq(st.st_mode & 07777, 0600, "the secret file has mode 0600");
	check_ok(sys_stat("/fixtures/dir", &dir_st), "stat a directory");
	check(S_ISDIR(dir_st.st_mode) && (dir_st.st_mode & 07777) == 0755, "the directory is S_IFDIR 0755");
	check_ok(sys_stat("fixtures/file.txt", &st), "stat a path relative to the cwd");
	check(same_file(&st, &file_st), "the relative path is the same file");

	check_ok(sys_stat("/", &root_st), "stat /");
	check_ok(sys_stat("/../..", &st), "stat /../..");
	check(same_file(&st, &root_st), "/.. is / itself");

	/* stat follows symlinks, lstat does not */
	check_ok(sys_stat("/fixtures/link-rel", &st), "stat a relative symlink");
	check(same_file(&st, &file_st) && S_ISREG(st.st_mode), "stat follows the relative symlink to file.txt");
	check_ok(sys_stat("/fixtures/link-abs", &st), "stat an absolute symlink");
	check(same_file(&st, &file_st), "stat follows the absolute symlink to file.txt");
	check_ok(sys_lstat("/fixtures/link-rel", &st), "lstat a relative symlink");
	check(S_ISLNK(st.st_mode), "lstat sees S_IFLNK");
	check_eq(st.st_size, 8, "a symlink's size is its target's length (file.txt)");
	check_ok(sys_lstat("/fixtures/link-abs", &st), "lstat an absolute symlink");
	check_eq(st.st_size, 18, "the absolute symlink has size 18 (/fixtures/file.txt)");
	check_ok(sys_lstat("/fixtures/file.txt", &st), "lstat a regular file");
	check(same_file(&st, &file_st), "lstat of a regular file is stat");
	check_ok(sys_lstat("/fixtures/dangling", &st), "lstat a dangling symlink");
	check(S_ISLNK(st.st_mode), "the dangling symlink is S_IFLNK");

	/* stat errors */
	check_errno(sys_stat("/fixtures/dangling", &st), ENOENT, "stat a dangling symlink is ENOENT");
	check_errno(sys_stat("/fixtures/nope", &st), ENOENT, "stat a missing file is ENOENT");
	check_errno(sys_stat("", &st), ENOENT, "stat an empty path is ENOENT");
	check_errno(sys_stat("/fixtures/file.txt/x", &st), ENOTDIR, "stat under a regular file is ENOTDIR");
	check_errno(sys_stat("/fixtures/file.txt/", &st), ENOTDIR, "stat a file with a trailing slash is ENOTDIR");
	check_errno(sys_stat("/fixtures/loop-a", &st), ELOOP, "stat a symlink loop is ELOOP");
	check_errno(sys_stat(BAD_PTR, &st), EFAULT, "stat a bad path pointer is EFAULT");
	check_errno(sys_stat("/fixtures/file.txt", BAD_PTR), EFAULT, "stat into a bad buffer is EFAULT");
	check_errno(sys_lstat(BAD_PTR, &st), EFAULT, "lstat a bad path pointer is EFAULT");

	/* fstat */
	fd = check_ok(open("/fixtures/file.txt", O_RDONLY), "open file.txt");
	check_ok(sys_fstat(fd, &st), "fstat file.txt");
	check(same_file(&st, &file_st) && st.st_size == FILE_LEN && st.st_mode == file_st.st_mode,
	      "fstat agrees with stat");
	check_errno(sys_fstat(fd, BAD_PTR), EFAULT, "fstat into a bad buffer is EFAULT");
	check_errno(sys_fstat(-1, &st), EBADF, "fstat fd -1 is EBADF");
	closedfd = check_ok(open("/fixtures/empty", O_RDONLY), "open empty");
	close(closedfd);
	check_errno(sys_fstat(closedfd, &st), EBADF, "fstat a closed fd is EBADF");
	closedfd = check_ok(open("/dev/null", O_RDONLY), "open /dev/null");
	check_ok(sys_fstat(closedfd, &st), "fstat /dev/null");
	check(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), "/dev/null is character device 1:3");
	close(closedfd);

	/* newfstatat */
	dirfd = check_ok(open("/fixtures", O_RDONLY | O_DIRECTORY), "open /fixtures");
	check_ok(sys_fstatat(dirfd, "file.txt", &st, 0), "newfstatat relative to a dirfd");
	check(same_file(&st, &file_st), "newfstatat dirfd-relative finds file.txt");
	check_ok(sys_fstatat(dirfd, "link-rel", &st, AT_SYMLINK_NOFOLLOW), "newfstatat AT_SYMLINK_NOFOLLOW");
	check(S_ISLNK(st.st_mode), "AT_SYMLINK_NOFOLLOW sees the symlink");
	check_ok(sys_fstatat(AT_FDCWD, "/fixtures/link-dir/", &st, AT_SYMLINK_NOFOLLOW),
		 "newfstatat a symlink with a trailing slash");
	check(S_ISDIR(st.st_mode) && st.st_ino == dir_st.st_ino, "a trailing slash follows the symlink anyway");
	check_ok(sys_fstatat(fd, "", &st, AT_EMPTY_PATH), "newfstatat AT_EMPTY_PATH on a file fd");
	check(same_file(&st, &file_st), "AT_EMPTY_PATH stats the fd itself");
	check_errno(sys_fstatat(fd, "", &st, 0), ENOENT, "an empty path without AT_EMPTY_PATH is ENOENT");
	check_errno(sys_fstatat(fd, "x", &st, 0), ENOTDIR, "a file as dirfd is ENOTDIR");
	check_errno(sys_fstatat(-1, "file.txt", &st, 0), EBADF, "dirfd -1 with a relative path is EBADF");
	check_ok(sys_fstatat(-1, "/fixtures/file.txt", &st, 0), "dirfd -1 is ignored for an absolute path");
	check_errno(sys_fstatat(dirfd, "file.txt", &st, 0x1), EINVAL, "newfstatat with unknown flags is EINVAL");

	/* statx */
	memset(&stx, 0, sizeof(stx));
	check_ok(sys_statx(AT_FDCWD, "/fixtures/file.txt", 0, STATX_BASIC_STATS, &stx), "statx file.txt");
	check_eq(stx.stx_mask & STATX_BASIC_STATS, STATX_BASIC_STATS, "statx fills all basic stats");
	check(stx.stx_mode == file_st.st_mode && stx.stx_size == FILE_LEN && stx.stx_nlink == 1 &&
	      stx.stx_uid == 0 && stx.stx_gid == 0, "statx mode, size, nlink, uid, gid agree with stat");
	check(stx.stx_ino == file_st.st_ino && makedev(stx.stx_dev_major, stx.stx_dev_minor) == file_st.st_dev,
	      "statx inode and device agree with stat");
	check(stx.stx_mtime.tv_sec == FILE_MTIME_SEC && stx.stx_mtime.tv_nsec == FILE_MTIME_NSEC, "statx mtime");
	check_ok(sys_statx(dirfd, "link-rel", AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx),
		 "statx AT_SYMLINK_NOFOLLOW");
	check(S_ISLNK(stx.stx_mode) && stx.stx_size == 8, "statx sees the symlink and its size");
	check_ok(sys_statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx), "statx AT_EMPTY_PATH");
	check_eq(stx.stx_ino, file_st.st_ino, "statx AT_EMPTY_PATH stats the fd");
	check_errno(sys_statx(AT_FDCWD, "/fixtures/nope", 0, STATX_BASIC_STATS, &stx), ENOENT,
		    "statx a missing file is ENOENT");
	check_errno(sys_statx(AT_FDCWD, "/fixtures/file.txt", 0, STATX_BASIC_STATS, BAD_PTR), EFAULT,
		    "statx into a bad buffer is EFAULT");
	check_errno(sys_statx(AT_FDCWD, BAD_PTR, 0, STATX_BASIC_STATS, &stx), EFAULT,
		    "statx a bad path pointer is EFAULT");
	check_errno(sys_statx(AT_FDCWD, "/fixtures/file.txt", 0, 0x80000000U, &stx), EINVAL,
		    "statx with the reserved mask bit is EINVAL");
	check_errno(sys_statx(AT_FDCWD, "/fixtures/file.txt", 0x1, STATX_BASIC_STATS, &stx), EINVAL,
		    "statx with unknown flags is EINVAL");
	check_errno(sys_statx(AT_FDCWD, "/fixtures/file.txt", AT_STATX_FORCE_SYNC | AT_STATX_DONT_SYNC,
			      STATX_BASIC_STATS, &stx), EINVAL, "statx FORCE_SYNC|DONT_SYNC is EINVAL");
	check_errno(sys_statx(-1, "file.txt", 0, STATX_BASIC_STATS, &stx), EBADF, "statx dirfd -1 is EBADF");

	close(fd);
	close(dirfd);
	return tap_done();
}
