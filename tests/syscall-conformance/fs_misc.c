/*
 * fs_misc: implemented file syscalls no other program exercised -- creat,
 * mknod and mknodat (fifo, regular; a device node as nobody is EPERM),
 * fchmodat, fchownat (AT_SYMLINK_NOFOLLOW), utime, fadvise64, sync, syncfs,
 * fdatasync, sync_file_range, and execveat (AT_EMPTY_PATH on an fd, and its
 * errnos) -- on scratch files under /tmp (removed again).
 */
#include "tap.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <utime.h>

#define D "/tmp/fs_misc.d"

static int dfd;

/* fd-relative: the rootfs's own root may be 0700, which nobody could not walk through */
static int nobody_mknod_dev(void)
{
	if (setgid(65534) || setuid(65534))
		return 1;
	if (mknodat(dfd, "dev", S_IFCHR | 0600, makedev(1, 3)) == 0)
		return 2;
	return errno == EPERM ? 0 : 10 + errno;
}

int main(void)
{
	struct stat tmp_st, st;
	struct timespec ts[2];
	struct utimbuf ub = {1000000, 2000000};
	char *argv[] = {"script", NULL}, *envp[] = {NULL};
	int fd, s, sfd;
	pid_t pid;

	tap_plan(27);
	stat("/tmp", &tmp_st);
	mkdir(D, 0777);
	chmod(D, 0777);
	fd = check_ok(creat(D "/c", 0640), "creat");
	check_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_WRONLY, "creat opens write-only");
	check_eq(write(fd, "data", 4), 4, "write through it");
	check_ok(fdatasync(fd), "fdatasync");
	check_ok(syscall(SYS_sync_file_range, fd, 0L, 0L, 0), "sync_file_range");
	check_errno(syscall(SYS_sync_file_range, fd, 0L, 0L, 8), EINVAL, "sync_file_range bad flag: EINVAL");
	check_ok(syscall(SYS_syncfs, fd), "syncfs");
	sync();
	check_ok(posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL), "fadvise64 SEQUENTIAL");
	check_eq(posix_fadvise(fd, 0, 0, 99), EINVAL, "fadvise64 bad advice: EINVAL");
	close(fd);

	check_ok(mknod(D "/fifo", S_IFIFO | 0600, 0), "mknod a fifo");
	stat(D "/fifo", &st);
	check(S_ISFIFO(st.st_mode), "it is a fifo");
	dfd = open(D, O_RDONLY | O_DIRECTORY);
	check_ok(mknodat(dfd, "reg", S_IFREG | 0600, 0), "mknodat a regular file");
	check_errno(mknodat(dfd, "reg", S_IFREG | 0600, 0), EEXIST, "again: EEXIST");
	check_errno(mknod(D "/bad", 0170000 | 0600, 0), EINVAL, "mknod an invalid type: EINVAL");
	check_eq(({ int st2; pid = fork(); if (pid == 0) _exit(nobody_mknod_dev()); waitpid(pid, &st2, 0); st2; }), 0,
		 "nobody: mknod of a device EPERM");

	check_ok(fchmodat(dfd, "reg", 0604, 0), "fchmodat");
	stat(D "/reg", &st);
	check_eq(st.st_mode & 07777, 0604, "mode 0604");
	check_errno(fchmodat(dfd, "reg", 0600, 0x8000), EINVAL, "fchmodat unknown flag: EINVAL");
	symlink("reg", D "/link");
	check_ok(fchownat(dfd, "link", 12, 34, AT_SYMLINK_NOFOLLOW), "fchownat the link itself");
	lstat(D "/link", &st);
	check(st.st_uid == 12 && st.st_gid == 34, "the link's owner changed");
	stat(D "/reg", &st);
	check(st.st_uid == 0, "its target's did not");
	check_ok(utime(D "/reg", &ub), "utime");
	stat(D "/reg", &st);
	check(st.st_atime == 1000000 && st.st_mtime == 2000000, "atime and mtime set");

	s = open(D "/script", O_CREAT | O_WRONLY, 0755);
	write(s, "#!/bin/sh\nexit 0\n", 17);
	close(s);
	sfd = open("/fixtures/script.sh", O_RDONLY);
	pid = fork();
	if (pid == 0) {
		syscall(SYS_execveat, sfd, "", argv, envp, AT_EMPTY_PATH);
		_exit(errno == ENOENT ? 3 : 2);   /* #!/bin/sh may be missing in the rootfs */
	}
	waitpid(pid, &s, 0);
	check(WIFEXITED(s) && (WEXITSTATUS(s) == 0 || WEXITSTATUS(s) == 3), "execveat(fd, \"\", AT_EMPTY_PATH) ran or found no /bin/sh");
	check_errno(syscall(SYS_execveat, sfd, "", argv, envp, 0), ENOENT, "execveat of \"\" without AT_EMPTY_PATH: ENOENT");
	check_errno(syscall(SYS_execveat, sfd, "x", argv, envp, 0), ENOTDIR, "execveat relative to a file: ENOTDIR");
	check_errno(syscall(SYS_execveat, AT_FDCWD, D "/reg", argv, envp, 0x1), EINVAL, "execveat unknown flag: EINVAL");

	unlink(D "/c"); unlink(D "/fifo"); unlink(D "/reg"); unlink(D "/link"); unlink(D "/script"); unlink(D "/dev");
	rmdir(D);
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);
	return tap_done();
}
