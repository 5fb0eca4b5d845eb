/*
 * fs_tree: changing the tree and file attributes, under /tmp only.
 *
 * mkdir, mkdirat, rmdir, unlink, unlinkat, rename, renameat2 (NOREPLACE,
 * EXCHANGE), link, linkat, symlink, symlinkat, mknodat (fifo), chmod,
 * fchmod, chown, fchown, lchown, truncate, ftruncate, fallocate, fsync,
 * fdatasync, utimensat, utimes, statfs, fstatfs, getxattr; O_CREAT with the
 * umask; O_CREAT through a dangling symlink; fstat/stat seeing a write's new
 * size at once.
 * Errno paths: EEXIST, ENOENT, ENOTDIR, EISDIR, ENOTEMPTY, EINVAL (rmdir
 * ".", rename into its own subtree, bad flags, ftruncate of a read-only fd,
 * negative lengths, bad nanoseconds), EPERM (link to a directory),
 * EBADF, ENODATA.
 *
 * Everything is made under /tmp/fs_tree.d and removed again; /tmp's own
 * times are put back at the end, so the rootfs is left as found.
 */
#include "tap.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/xattr.h>

#define D "/tmp/fs_tree.d"

static long sys_renameat2(int od, const char *o, int nd, const char *n, unsigned fl)
{
	return syscall(SYS_renameat2, od, o, nd, n, fl);
}

static off_t size_of(const char *p)
{
	struct stat s;
	return stat(p, &s) == 0 ? s.st_size : -1;
}

static int mode_of(const char *p)
{
	struct stat s;
	return lstat(p, &s) == 0 ? (int)s.st_mode : -1;
}

static int read_all(const char *p, char *buf, int n)
{
	int fd = open(p, O_RDONLY), got;
	if (fd < 0)
		return -1;
	got = (int)read(fd, buf, n - 1);
	close(fd);
	if (got >= 0)
		buf[got] = 0;
	return got;
}

int main(void)
{
	struct stat tmp_st, s, s2;
	struct timespec ts[2];
	struct timeval tv[2];
	struct statfs sfs;
	char buf[256];
	int fd, dfd;

	tap_plan(111);
	stat("/tmp", &tmp_st);
	umask(022);

	/* mkdir / rmdir */
	check_ok(mkdir(D, 0777), "mkdir");
	check_eq(mode_of(D), S_IFDIR | 0755, "mkdir applies the umask");
	check_errno(mkdir(D, 0777), EEXIST, "mkdir of an existing name: EEXIST");
	check_errno(mkdir(D "/no/such", 0777), ENOENT, "mkdir under a missing directory: ENOENT");
	check_errno(mkdir("/tmp", 0777), EEXIST, "mkdir /tmp: EEXIST");
	check_ok(mkdir(D "/sub/", 0700), "mkdir with a trailing slash");
	check_eq(mode_of(D "/sub"), S_IFDIR | 0700, "mkdir mode 0700");
	stat(D, &s);
	check_eq(s.st_nlink, 3, "a directory's nlink counts its subdirectories");
	dfd = open(D, O_RDONLY | O_DIRECTORY);
	check_ok(dfd, "open the test directory");
	check_ok(mkdirat(dfd, "sub2", 0755), "mkdirat relative to a dirfd");
	check_errno(rmdir(D "/sub2/."), EINVAL, "rmdir of '.': EINVAL");
	check_ok(syscall(SYS_unlinkat, dfd, "sub2", AT_REMOVEDIR), "unlinkat AT_REMOVEDIR");
	check_errno(rmdir(D "/sub2"), ENOENT, "rmdir of a removed directory: ENOENT");

	/* create, write, size coherence */
	fd = open(D "/f", O_CREAT | O_WRONLY | O_EXCL, 0666);
	check_ok(fd, "open O_CREAT|O_EXCL");
	check_eq(mode_of(D "/f"), S_IFREG | 0644, "O_CREAT applies the umask");
	check_errno(open(D "/f", O_CREAT | O_EXCL | O_WRONLY, 0666), EEXIST, "O_EXCL on an existing file: EEXIST");
	check_eq(write(fd, "hello world\n", 12), 12, "write 12 bytes");
	fstat(fd, &s);
	check_eq(s.st_size, 12, "fstat sees the new size at once");
	check_eq(size_of(D "/f"), 12, "stat by path sees the new size at once");
	check_eq(fcntl(fd, F_GETFL) & (O_CREAT | O_EXCL | O_ACCMODE), O_WRONLY, "F_GETFL of a created file: no O_CREAT/O_EXCL");
	check_ok(fsync(fd), "fsync");
	check_ok(fdatasync(fd), "fdatasync");
	check_ok(ftruncate(fd, 5), "ftruncate to 5");
	check_eq(size_of(D "/f"), 5, "size after ftruncate");
	check_errno(ftruncate(fd, -1), EINVAL, "ftruncate to a negative length: EINVAL");
	check_ok(fallocate(fd, 0, 0, 100), "fallocate mode 0");
	fstat(fd, &s);
	check_eq(s.st_size, 100, "fallocate grows the file");
	check_errno(fallocate(fd, 0, 0, 0), EINVAL, "fallocate of length 0: EINVAL");
	close(fd);
	check_ok(truncate(D "/f", 5), "truncate by path");
	check_eq(read_all(D "/f", buf, sizeof buf), 5, "read after truncate");
	check_str(buf, "hello", "content kept by truncate");
	fd = open(D "/f", O_RDONLY);
	check_errno(ftruncate(fd, 0), EINVAL, "ftruncate of a read-only fd: EINVAL");
	close(fd);
	check_errno(truncate(D, 0), EISDIR, "truncate of a directory: EISDIR");
	check_errno(truncate(D "/nope", 0), ENOENT, "truncate of a missing file: ENOENT");
	fd = open(D "/f", O_WRONLY | O_APPEND);
	check_eq(write(fd, "!", 1), 1, "append");
	close(fd);
	check_eq(size_of(D "/f"), 6, "size after append through a new fd");
	fd = open(D "/f", O_WRONLY | O_TRUNC);
	close(fd);
	check_eq(size_of(D "/f"), 0, "O_TRUNC empties the file (stat by path)");

	/* unlink */
	check_errno(unlink(D "/sub"), EISDIR, "unlink of a directory: EISDIR");
	check_errno(unlink(D "/f/"), ENOTDIR, "unlink of 'file/': ENOTDIR");
	check_errno(unlink(D "/nope"), ENOENT, "unlink of a missing name: ENOENT");
	check_errno(rmdir(D "/f"), ENOTDIR, "rmdir of a file: ENOTDIR");
	check_errno(mkdir(D "/f/x", 0777), ENOTDIR, "mkdir under a file: ENOTDIR");
	fd = open(D "/sub/inner", O_CREAT | O_WRONLY, 0600);
	close(fd);
	check_errno(rmdir(D "/sub"), ENOTEMPTY, "rmdir of a non-empty directory: ENOTEMPTY");

	/* rename */
	check_ok(rename(D "/f", D "/g"), "rename a file");
	check_errno(access(D "/f", F_OK), ENOENT, "the old name is gone");
	check_ok(access(D "/g", F_OK), "the new name exists");
	check_ok(rename(D "/g", D "/g"), "rename onto itself");
	fd = open(D "/h", O_CREAT | O_WRONLY, 0644);
	check_eq(write(fd, "hh", 2), 2, "write h");
	close(fd);
	check_errno(sys_renameat2(AT_FDCWD, D "/g", AT_FDCWD, D "/h", 1), EEXIST, "RENAME_NOREPLACE onto an existing name: EEXIST");
	check_ok(sys_renameat2(AT_FDCWD, D "/g", AT_FDCWD, D "/h", 2), "RENAME_EXCHANGE");
	check_eq(size_of(D "/g"), 2, "exchanged: g has h's data");
	check_eq(size_of(D "/h"), 0, "exchanged: h has g's data");
	check_errno(sys_renameat2(AT_FDCWD, D "/g", AT_FDCWD, D "/nope", 2), ENOENT, "RENAME_EXCHANGE with a missing target: ENOENT");
	check_errno(sys_renameat2(AT_FDCWD, D "/g", AT_FDCWD, D "/h", 3), EINVAL, "NOREPLACE|EXCHANGE: EINVAL");
	check_ok(rename(D "/h", D "/g"), "rename over an existing file");
	check_eq(size_of(D "/g"), 0, "the replaced file is gone");
	check_errno(rename(D "/sub", D "/sub/inner2"), EINVAL, "rename a directory into itself: EINVAL");
	check_errno(rename(D "/sub", D "/g"), ENOTDIR, "rename a directory over a file: ENOTDIR");
	check_errno(rename(D "/g", D "/sub"), EISDIR, "rename a file over a directory: EISDIR");
	check_errno(rename(D "/nope", D "/x"), ENOENT, "rename a missing name: ENOENT");
	check_ok(mkdir(D "/empty", 0755), "mkdir an empty directory");
	check_ok(rename(D "/sub", D "/empty"), "rename a directory over an empty one");
	check_ok(access(D "/empty/inner", F_OK), "the moved directory's content follows it");
	check_ok(renameat(dfd, "empty", dfd, "sub"), "renameat back");

	/* links */
	check_ok(link(D "/g", D "/g2"), "link");
	stat(D "/g", &s);
	check_eq(s.st_nlink, 2, "nlink after link");
	stat(D "/g2", &s2);
	check_eq(s2.st_ino, s.st_ino, "a hard link names the same inode");
	check_errno(link(D "/sub", D "/sub2"), EPERM, "link to a directory: EPERM");
	check_errno(link(D "/g", D "/g2"), EEXIST, "link onto an existing name: EEXIST");
	check_ok(unlink(D "/g2"), "unlink the link");
	check_ok(symlink("g", D "/sl"), "symlink");
	check_eq(readlink(D "/sl", buf, sizeof buf), 1, "readlink the new symlink");
	check_errno(symlink("", D "/sl2"), ENOENT, "symlink to an empty target: ENOENT");
	check_errno(symlink("x", D "/sl"), EEXIST, "symlink onto an existing name: EEXIST");
	check_ok(symlinkat("/tmp", dfd, "sl2"), "symlinkat");
	check_ok(linkat(AT_FDCWD, D "/sl", AT_FDCWD, D "/sl3", 0), "linkat a symlink itself");
	check_eq(mode_of(D "/sl3") & S_IFMT, S_IFLNK, "linkat without AT_SYMLINK_FOLLOW links the symlink");
	check_ok(linkat(AT_FDCWD, D "/sl", AT_FDCWD, D "/sl4", AT_SYMLINK_FOLLOW), "linkat AT_SYMLINK_FOLLOW");
	check_eq(mode_of(D "/sl4") & S_IFMT, S_IFREG, "AT_SYMLINK_FOLLOW links the target");
	check_ok(mknodat(dfd, "fifo", S_IFIFO | 0640, 0), "mknodat a fifo");
	check_eq(mode_of(D "/fifo"), S_IFIFO | 0640, "fifo mode");

	/* chmod / chown */
	check_ok(chmod(D "/g", 0600), "chmod");
	check_eq(mode_of(D "/g"), S_IFREG | 0600, "mode after chmod");
	fd = open(D "/g", O_RDONLY);
	check_ok(fchmod(fd, 04755), "fchmod with set-user-ID");
	check_eq(mode_of(D "/g"), S_IFREG | 04755, "mode after fchmod");
	check_ok(fchown(fd, 1000, 1000), "fchown");
	fstat(fd, &s);
	check(s.st_uid == 1000 && s.st_gid == 1000, "owner after fchown");
	check_eq(s.st_mode & 07777, 0755, "chown clears set-user-ID");
	check_ok(chown(D "/g", -1, 0), "chown group only");
	stat(D "/g", &s);
	check(s.st_uid == 1000 && s.st_gid == 0, "owner after chown(-1, 0)");
	check_ok(lchown(D "/sl", 7, 7), "lchown a symlink");
	lstat(D "/sl", &s);
	check_eq(s.st_uid, 7, "lchown changed the link, not the target");
	close(fd);

	/* times */
	ts[0].tv_sec = 1000000000; ts[0].tv_nsec = 5;
	ts[1].tv_sec = 1200000000; ts[1].tv_nsec = 123456789;
	check_ok(utimensat(AT_FDCWD, D "/g", ts, 0), "utimensat explicit times");
	stat(D "/g", &s);
	check(s.st_atim.tv_sec == 1000000000 && s.st_mtim.tv_sec == 1200000000 && s.st_mtim.tv_nsec == 123456789,
	      "times after utimensat");
	ts[0].tv_nsec = UTIME_OMIT; ts[1].tv_sec = 1300000000; ts[1].tv_nsec = 0;
	check_ok(utimensat(AT_FDCWD, D "/g", ts, 0), "utimensat with UTIME_OMIT");
	stat(D "/g", &s);
	check(s.st_atim.tv_sec == 1000000000 && s.st_mtim.tv_sec == 1300000000, "UTIME_OMIT keeps atime");
	ts[0].tv_nsec = 1000000000;
	check_errno(utimensat(AT_FDCWD, D "/g", ts, 0), EINVAL, "utimensat nanoseconds out of range: EINVAL");
	tv[0].tv_sec = 1400000000; tv[0].tv_usec = 0; tv[1].tv_sec = 1500000000; tv[1].tv_usec = 7;
	check_ok(utimes(D "/g", tv), "utimes");
	stat(D "/g", &s);
	check(s.st_mtim.tv_sec == 1500000000 && s.st_mtim.tv_nsec == 7000, "times after utimes");

	/* statfs, xattrs */
	check_ok(statfs(D, &sfs), "statfs");
	fd = open(D "/g", O_RDONLY);
	check_ok(fstatfs(fd, &sfs), "fstatfs");
	check_errno(fgetxattr(fd, "user.nosuchattr", buf, sizeof buf), ENODATA, "fgetxattr of an absent attribute: ENODATA");
	close(fd);
	check_errno(getxattr(D "/g", "user.nosuchattr", buf, sizeof buf), ENODATA, "getxattr of an absent attribute: ENODATA");
	check_errno(fsync(-1), EBADF, "fsync(-1): EBADF");

	/* O_CREAT through a dangling symlink makes its target */
	symlink("made-by-open", D "/dangling");
	symlink("selfloop", D "/selfloop");
	fd = open(D "/dangling", O_CREAT | O_WRONLY, 0644);
	check_ok(fd, "O_CREAT through a dangling symlink");
	close(fd);
	check_ok(access(D "/made-by-open", F_OK), "the symlink's target was made");
	check_errno(open(D "/selfloop", O_CREAT | O_WRONLY, 0644), ELOOP, "O_CREAT through a symlink loop: ELOOP");
	check_errno(open(D "/dangling", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST, "O_EXCL on a symlink: EEXIST");
	unlink(D "/dangling");
	unlink(D "/selfloop");
	unlink(D "/made-by-open");

	/* clean up */
	close(dfd);
	check_ok(unlink(D "/sub/inner") | unlink(D "/g") | unlink(D "/sl") | unlink(D "/sl2") | unlink(D "/sl3") |
		 unlink(D "/sl4") | unlink(D "/fifo"), "unlink everything");
	check_ok(rmdir(D "/sub"), "rmdir the emptied subdirectory");
	check_ok(rmdir(D), "rmdir the test directory");
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);
	return tap_done();
}
