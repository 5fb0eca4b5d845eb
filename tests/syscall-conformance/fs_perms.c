/*
 * fs_perms: permission checks for a non-root caller, under /tmp.
 *
 * As root the program makes a root-only file (0600), a root-owned 0755
 * directory and a file of uid 1000's in sticky /tmp; then it becomes uid
 * and gid 1000 (real and effective; saved stays 0 so it can come back and
 * clean up) and checks what Linux refuses: EACCES to read a 0600 file, to
 * open a 0600 file for writing, to create in or remove from a directory
 * without write permission, to search a 0700 directory; EPERM to chmod/chown
 * someone else's file, to remove someone else's file from a sticky directory,
 * to set explicit times on a file one does not own; and what it allows
 * (utimensat(NULL) with write permission, chmod of one's own file, access()
 * reporting the same).
 * Paths are relative to /tmp: the test rootfs's own root may be mode 0700.
 */
#include "tap.h"
#include <fcntl.h>
#include <sys/stat.h>

#define D "fs_perms.d"   /* relative to /tmp: the rootfs root itself may be 0700 */

int main(void)
{
	struct stat tmp_st, s;
	struct timespec ts[2];
	int fd;

	tap_plan(27);
	stat("/tmp", &tmp_st);
	chdir("/tmp");
	umask(022);
	check_ok(mkdir(D, 0755), "root: mkdir a 0755 directory");
	fd = open(D "/secret", O_CREAT | O_WRONLY, 0600);
	check_ok(fd, "root: a 0600 file");
	close(fd);
	fd = open(D "/shared", O_CREAT | O_WRONLY, 0666);
	fchmod(fd, 0666);
	close(fd);
	check_ok(mkdir(D "/closed", 0700), "root: a 0700 directory");
	fd = open("fs_perms.user", O_CREAT | O_WRONLY, 0644);
	check_ok(fchown(fd, 1000, 1000), "root: a file owned by 1000 in /tmp");
	close(fd);
	fd = open("fs_perms.root", O_CREAT | O_WRONLY, 0666);
	fchmod(fd, 0666);
	close(fd);

	check_ok(setresgid(1000, 1000, 0), "setresgid(1000, 1000, 0)");
	check_ok(setresuid(1000, 1000, 0), "setresuid(1000, 1000, 0)");
	check_errno(open(D "/secret", O_RDONLY), EACCES, "read a root 0600 file: EACCES");
	check_errno(access(D "/secret", R_OK), EACCES, "access(R_OK) agrees");
	check_errno(open(D "/secret", O_WRONLY), EACCES, "write a root 0600 file: EACCES");
	check_errno(open(D "/secret", O_RDWR | O_CLOEXEC), EACCES, "read-write a root 0600 file: EACCES");
	check_errno(open(D "/new", O_CREAT | O_WRONLY, 0644), EACCES, "create in a root 0755 directory: EACCES");
	check_errno(mkdir(D "/sub", 0755), EACCES, "mkdir in a root 0755 directory: EACCES");
	check_errno(unlink(D "/shared"), EACCES, "unlink from a root 0755 directory: EACCES");
	check_errno(stat(D "/closed/x", &s), EACCES, "search a 0700 directory: EACCES");
	check_errno(chmod(D "/shared", 0600), EPERM, "chmod someone else's file: EPERM");
	check_errno(chown("fs_perms.user", 0, 0), EPERM, "give a file away: EPERM");
	check_errno(unlink("fs_perms.root"), EPERM, "unlink someone else's file in sticky /tmp: EPERM");
	ts[0].tv_sec = ts[1].tv_sec = 1;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	check_errno(utimensat(AT_FDCWD, D "/shared", ts, 0), EPERM, "explicit times on someone else's file: EPERM");
	check_ok(utimensat(AT_FDCWD, D "/shared", NULL, 0), "utimensat(NULL) with write permission");
	check_errno(utimensat(AT_FDCWD, D "/secret", NULL, 0), EACCES, "utimensat(NULL) without write permission: EACCES");
	check_ok(chmod("fs_perms.user", 0600), "chmod one's own file");
	check_ok(unlink("fs_perms.user"), "unlink one's own file in sticky /tmp");
	check_ok(open(D "/shared", O_RDWR), "open a 0666 file read-write");

	check_ok(setresuid(0, 0, 0), "back to root");
	check_ok(setresgid(0, 0, 0), "root group again");
	check_ok(unlink(D "/secret") | unlink(D "/shared") | rmdir(D "/closed") | unlink("fs_perms.root"),
		 "root: clean up");
	check_ok(rmdir(D), "root: rmdir");
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);
	return tap_done();
}
