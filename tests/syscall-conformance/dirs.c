/*
 * dirs: getdents64, getcwd, chdir, fchdir, access, faccessat, faccessat2,
 * readlink, readlinkat (raw syscalls throughout).
 *
 * Success paths: the exact entry set and d_type of /fixtures/dir and of an
 * empty directory, read with a big buffer and one entry per call, d_ino
 * matching stat, end of directory, rewinding with lseek; getcwd after chdir
 * to absolute, relative, "..", symlinked and fd-named directories (and its
 * return value, the length including the NUL); access modes as root
 * (X_OK needs an x bit even for root); faccessat2 flags; readlink of
 * relative and absolute symlinks, truncation to a short buffer.
 * Errno paths: EINVAL (getdents64 buffer too small, bad access mode, bad
 * faccessat2 flags, readlink of a non-symlink, readlink bufsiz <= 0),
 * ENOTDIR, ENOENT, ELOOP, EBADF, EFAULT, ERANGE (getcwd buffer too small),
 * EACCES.
 */
#include "tap.h"
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

struct linux_dirent64 {
	unsigned long d_ino;
	long d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static long sys_getdents64(int fd, void *buf, size_t n) { return syscall(SYS_getdents64, fd, buf, n); }
static long sys_getcwd(char *buf, size_t n) { return syscall(SYS_getcwd, buf, n); }
static long sys_access(const char *p, int mode) { return syscall(SYS_access, p, mode); }
static long sys_faccessat(int dfd, const char *p, int mode) { return syscall(SYS_faccessat, dfd, p, mode); }
static long sys_faccessat2(int dfd, const char *p, int mode, int fl)
{
	return syscall(SYS_faccessat2, dfd, p, mode, fl);
}
static long sys_readlink(const char *p, char *buf, long n) { return syscall(SYS_readlink, p, buf, n); }
static long sys_readlinkat(int dfd, const char *p, char *buf, long n)
{
	return syscall(SYS_readlinkat, dfd, p, buf, n);
}

/*
 * Read a whole directory with getdents64 calls of `bufsize` bytes; return the
 * sorted entries as "name:type,..." in `out`, or NULL if a call failed.
 */
static const char *list_dir(int fd, size_t bufsize, char *out, size_t outsize, int *calls)
{
	char names[32][64], tmp[64];
	char buf[4096] __attribute__((aligned(8)));
	int n = 0, i, j;
	long got;

	*calls = 0;
	while ((got = sys_getdents64(fd, buf, bufsize)) > 0) {
		(*calls)++;
		for (long off = 0; off < got;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
			if (n < 32)
				snprintf(names[n++], 64, "%s:%d", d->d_name, d->d_type);
			off += d->d_reclen;
		}
	}
	if (got < 0)
		return NULL;
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			if (strcmp(names[i], names[j]) > 0) {
				strcpy(tmp, names[i]);
				strcpy(names[i], names[j]);
				strcpy(names[j], tmp);
			}
	out[0] = '\0';
	for (i = 0; i < n; i++) {
		strncat(out, names[i], outsize - strlen(out) - 2);
		if (i + 1 < n)
			strcat(out, ",");
	}
	return out;
}

/* Check that getcwd reports `want` and returns strlen(want) + 1. */
static void check_cwd(const char *want, const char *name)
{
	char buf[256];
	long r;

	memset(buf, 'X', sizeof(buf));
	r = sys_getcwd(buf, sizeof(buf));
	if (r < 0)
		snprintf(buf, sizeof(buf), "getcwd failed: %s", errno_name(errno));
	check_str(buf, want, "%s: getcwd is %s", name, want);
	check_eq(r, strlen(want) + 1, "%s: getcwd returns strlen + 1", name);
}

#define DIR_ENTRIES "..:4,.:4,alpha:8,beta:8,gamma:4,link:10" /* DT_DIR 4, DT_REG 8, DT_LNK 10 */

int main(void)
{
	char list[1024], buf[256] __attribute__((aligned(8)));
	struct linux_dirent64 *d;
	struct stat st;
	int fd, filefd, rootfd, calls;
	long r;

	tap_plan(89);

	/* getdents64 */
	fd = check_ok(open("/fixtures/dir", O_RDONLY | O_DIRECTORY), "open /fixtures/dir");
	check_str(list_dir(fd, 4096, list, sizeof(list), &calls), DIR_ENTRIES, "getdents64 lists the entries");
	check_eq(calls, 1, "a 4096-byte buffer holds all six entries");
	check_eq(sys_getdents64(fd, buf, sizeof(buf)), 0, "getdents64 at the end returns 0");
	check_eq(lseek(fd, 0, SEEK_SET), 0, "lseek rewinds the directory");
	check_str(list_dir(fd, 40, list, sizeof(list), &calls), DIR_ENTRIES,
		  "one entry per call (40-byte buffer) lists the same entries");
	check_eq(calls, 6, "a 40-byte buffer takes six calls");
	lseek(fd, 0, SEEK_SET);
	check_errno(sys_getdents64(fd, buf, 10), EINVAL, "a buffer too small for one entry is EINVAL");
	check_errno(sys_getdents64(fd, BAD_PTR, 4096), EFAULT, "getdents64 into a bad pointer is EFAULT");
	r = sys_getdents64(fd, buf, sizeof(buf));
	check(r > 0, "getdents64 after the failures still reads entries");
	check_ok(stat("/fixtures/dir/alpha", &st), "stat alpha");
	r = 0;
	lseek(fd, 0, SEEK_SET);
	for (long got = sys_getdents64(fd, buf, sizeof(buf)), off = 0; off < got; off += d->d_reclen) {
		d = (struct linux_dirent64 *)(buf + off);
		if (strcmp(d->d_name, "alpha") == 0)
			r = d->d_ino == st.st_ino;
	}
	check(r, "d_ino of alpha is its st_ino");
	close(fd);
	fd = check_ok(open("/fixtures/emptydir", O_RDONLY | O_DIRECTORY), "open /fixtures/emptydir");
	check_str(list_dir(fd, 4096, list, sizeof(list), &calls), "..:4,.:4", "an empty directory lists only . and ..");
	close(fd);
	filefd = check_ok(open("/fixtures/file.txt", O_RDONLY), "open file.txt");
	check_errno(sys_getdents64(filefd, buf, sizeof(buf)), ENOTDIR, "getdents64 on a file is ENOTDIR");
	check_errno(sys_getdents64(-1, buf, sizeof(buf)), EBADF, "getdents64 fd -1 is EBADF");

	/* getcwd, chdir, fchdir */
	check_cwd("/", "at start");
	check_errno(sys_getcwd(buf, 1), ERANGE, "getcwd with a 1-byte buffer is ERANGE");
	check_errno(sys_getcwd(buf, 0), ERANGE, "getcwd with a 0-byte buffer is ERANGE");
	check_errno(sys_getcwd(BAD_PTR, 256), EFAULT, "getcwd into a bad pointer is EFAULT");
	check_ok(chdir("/fixtures/dir"), "chdir an absolute path");
	check_cwd("/fixtures/dir", "after chdir /fixtures/dir");
	fd = check_ok(open("alpha", O_RDONLY), "open a path relative to the new cwd");
	close(fd);
	check_ok(chdir("gamma"), "chdir a relative path");
	check_cwd("/fixtures/dir/gamma", "after chdir gamma");
	check_ok(chdir("../.."), "chdir ../..");
	check_cwd("/fixtures", "after chdir ../..");
	check_ok(chdir("link-dir"), "chdir through a symlink");
	check_cwd("/fixtures/dir", "after chdir link-dir (resolved)");
	check_ok(chdir("/fixtures/link-gamma/.."), "chdir link-gamma/..");
	check_cwd("/fixtures/dir", "after chdir link-gamma/.. (physical ..)");
	check_ok(chdir("/../../.."), "chdir /../../..");
	check_cwd("/", "after chdir above /");
	check_errno(chdir("/fixtures/file.txt"), ENOTDIR, "chdir a file is ENOTDIR");
	check_errno(chdir("/fixtures/nope"), ENOENT, "chdir a missing path is ENOENT");
	check_errno(chdir(""), ENOENT, "chdir an empty path is ENOENT");
	check_errno(chdir("/fixtures/loop-a"), ELOOP, "chdir a symlink loop is ELOOP");
	check_errno(chdir(BAD_PTR), EFAULT, "chdir a bad pointer is EFAULT");
	check_cwd("/", "after failed chdirs");
	fd = check_ok(open("/fixtures/dir/gamma", O_RDONLY | O_DIRECTORY), "open gamma");
	check_ok(fchdir(fd), "fchdir");
	check_cwd("/fixtures/dir/gamma", "after fchdir");
	close(fd);
	check_errno(fchdir(filefd), ENOTDIR, "fchdir a file is ENOTDIR");
	check_errno(fchdir(-1), EBADF, "fchdir -1 is EBADF");
	check_ok(chdir("/"), "chdir /");

	/* access, faccessat, faccessat2 (we are root) */
	check_ok(sys_access("/fixtures/file.txt", F_OK), "access F_OK");
	check_ok(sys_access("/fixtures/secret", R_OK), "access R_OK on a 0600 file as root");
	check_errno(sys_access("/fixtures/file.txt", X_OK), EACCES, "access X_OK without any x bit is EACCES, even for root");
	check_ok(sys_access("/fixtures/script.sh", X_OK), "access X_OK on a 0755 file");
	check_ok(sys_access("/fixtures/dir", X_OK), "access X_OK on a directory");
	check_errno(sys_access("/fixtures/nope", F_OK), ENOENT, "access a missing file is ENOENT");
	check_errno(sys_access("/fixtures/dangling", F_OK), ENOENT, "access a dangling symlink is ENOENT");
	check_errno(sys_access("/fixtures/self-loop", F_OK), ELOOP, "access a symlink loop is ELOOP");
	check_errno(sys_access("/fixtures/file.txt/x", F_OK), ENOTDIR, "access under a file is ENOTDIR");
	check_errno(sys_access("/fixtures/file.txt", 8), EINVAL, "access with mode 8 is EINVAL");
	check_errno(sys_access(BAD_PTR, F_OK), EFAULT, "access a bad pointer is EFAULT");
	rootfd = check_ok(open("/fixtures", O_RDONLY | O_DIRECTORY), "open /fixtures");
	check_ok(sys_faccessat(rootfd, "file.txt", R_OK), "faccessat relative to a dirfd");
	check_errno(sys_faccessat(-1, "file.txt", R_OK), EBADF, "faccessat dirfd -1 is EBADF");
	check_errno(sys_faccessat(filefd, "x", R_OK), ENOTDIR, "faccessat with a file dirfd is ENOTDIR");
	check_ok(sys_faccessat2(rootfd, "dangling", F_OK, AT_SYMLINK_NOFOLLOW),
		 "faccessat2 AT_SYMLINK_NOFOLLOW on a dangling symlink");
	check_errno(sys_faccessat2(rootfd, "dangling", F_OK, 0), ENOENT,
		    "faccessat2 without AT_SYMLINK_NOFOLLOW follows it: ENOENT");
	check_ok(sys_faccessat2(rootfd, "file.txt", R_OK, AT_EACCESS), "faccessat2 AT_EACCESS");
	check_ok(sys_faccessat2(filefd, "", R_OK, AT_EMPTY_PATH), "faccessat2 AT_EMPTY_PATH");
	check_errno(sys_faccessat2(rootfd, "file.txt", R_OK, 0x1), EINVAL, "faccessat2 with unknown flags is EINVAL");

	/* readlink, readlinkat */
	memset(buf, 'X', sizeof(buf));
	check_eq(sys_readlink("/fixtures/link-rel", buf, sizeof(buf)), 8, "readlink returns the target length");
	check(memcmp(buf, "file.txt", 8) == 0 && buf[8] == 'X', "readlink copies the target, no NUL");
	check_eq(sys_readlink("/fixtures/link-rel", buf, 4), 4, "readlink truncates to bufsiz");
	check_eq(sys_readlinkat(rootfd, "link-abs", buf, sizeof(buf)), 18, "readlinkat relative to a dirfd");
	check_mem(buf, "/fixtures/file.txt", 18, "readlinkat copies the absolute target");
	check_eq(sys_readlink("/fixtures/link-dir/link", buf, sizeof(buf)), 5, "readlink through a symlinked directory");
	check_errno(sys_readlink("/fixtures/file.txt", buf, sizeof(buf)), EINVAL, "readlink a regular file is EINVAL");
	check_errno(sys_readlink("/fixtures/link-rel", buf, 0), EINVAL, "readlink with bufsiz 0 is EINVAL");
	check_errno(sys_readlink("/fixtures/link-rel", buf, -1), EINVAL, "readlink with bufsiz -1 is EINVAL");
	check_errno(sys_readlink("/fixtures/nope", buf, sizeof(buf)), ENOENT, "readlink a missing path is ENOENT");
	check_errno(sys_readlink("", buf, sizeof(buf)), ENOENT, "readlink an empty path is ENOENT");
	check_errno(sys_readlink("/fixtures/link-rel", BAD_PTR, 64), EFAULT, "readlink into a bad pointer is EFAULT");
	check_errno(sys_readlinkat(-1, "link-rel", buf, sizeof(buf)), EBADF, "readlinkat dirfd -1 is EBADF");
	check_errno(sys_readlinkat(filefd, "x", buf, sizeof(buf)), ENOTDIR, "readlinkat with a file dirfd is ENOTDIR");

	close(rootfd);
	close(filefd);
	return tap_done();
}
