/*
 * fs_locks: flock(2), POSIX record locks and OFD locks within one process,
 * on a file under /tmp (removed again; /tmp's times are put back).
 *
 * flock locks belong to the open file description: a second open of the
 * same file conflicts (EWOULDBLOCK with LOCK_NB), a dup does not, closing
 * the last descriptor releases.  POSIX locks belong to the process: its
 * own locks never conflict, F_GETLK answers F_UNLCK, and they split and
 * merge by range.  OFD locks conflict with the process's POSIX locks
 * (different owners) and F_OFD_GETLK reports them with the pid.
 * Errno paths: EINVAL (bad flock op, bad l_type, bad l_whence, OFD with a
 * pid), EBADF (write lock on a read-only fd, flock on -1), EAGAIN.
 */
#include "tap.h"
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#define F "/tmp/fs_locks.f"

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	return fcntl(fd, cmd, &fl);
}

int main(void)
{
	struct stat tmp_st;
	struct timespec ts[2];
	struct flock fl;
	int a, b, c, ro;

	tap_plan(27);
	stat("/tmp", &tmp_st);
	a = open(F, O_CREAT | O_RDWR | O_TRUNC, 0644);
	check_ok(a, "create the file");
	check_eq(write(a, "0123456789", 10), 10, "write 10 bytes");
	b = open(F, O_RDWR);
	ro = open(F, O_RDONLY);

	/* flock */
	check_ok(flock(a, LOCK_EX), "flock LOCK_EX");
	check_errno(flock(b, LOCK_EX | LOCK_NB), EWOULDBLOCK, "another open file description: EWOULDBLOCK");
	check_errno(flock(b, LOCK_SH | LOCK_NB), EWOULDBLOCK, "a shared lock conflicts with an exclusive one");
	c = dup(a);
	check_ok(flock(c, LOCK_EX | LOCK_NB), "a dup shares the lock");
	check_ok(flock(a, LOCK_SH), "convert to shared");
	check_ok(flock(b, LOCK_SH | LOCK_NB), "two shared locks coexist");
	check_ok(flock(b, LOCK_UN), "unlock");
	check_ok(flock(a, LOCK_EX | LOCK_NB), "back to exclusive");
	close(a);
	check_errno(flock(b, LOCK_EX | LOCK_NB), EWOULDBLOCK, "still held through the dup");
	close(c);
	check_ok(flock(b, LOCK_EX | LOCK_NB), "closing the last descriptor releases");
	check_ok(flock(b, LOCK_UN), "unlock again");
	check_errno(flock(b, 3), EINVAL, "flock op 3: EINVAL");
	check_errno(flock(-1, LOCK_SH), EBADF, "flock(-1): EBADF");

	/* POSIX record locks */
	a = open(F, O_RDWR);
	check_ok(setlk(a, F_SETLK, F_WRLCK, 0, 5), "F_SETLK write lock on [0,5)");
	check_ok(setlk(b, F_SETLK, F_WRLCK, 0, 10), "the same process never conflicts with itself");
	fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
	check_ok(fcntl(a, F_GETLK, &fl), "F_GETLK");
	check_eq(fl.l_type, F_UNLCK, "F_GETLK: no conflict with our own locks");
	check_errno(setlk(ro, F_SETLK, F_WRLCK, 0, 1), EBADF, "write lock on a read-only fd: EBADF");
	check_errno(setlk(a, F_SETLK, 7, 0, 1), EINVAL, "bad l_type: EINVAL");
	fl = (struct flock){.l_type = F_RDLCK, .l_whence = 9, .l_start = 0, .l_len = 1};
	check_errno(fcntl(a, F_SETLK, &fl), EINVAL, "bad l_whence: EINVAL");

	/* OFD locks against the process's POSIX locks */
	c = open(F, O_RDWR);
	check_errno(setlk(c, F_OFD_SETLK, F_WRLCK, 2, 1), EAGAIN, "an OFD lock conflicts with the process's POSIX lock");
	fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 3, .l_len = 1};
	check_ok(fcntl(c, F_OFD_GETLK, &fl), "F_OFD_GETLK");
	check(fl.l_type == F_WRLCK && fl.l_pid == getpid(), "F_OFD_GETLK reports the POSIX lock and its pid");
	fl = (struct flock){.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1, .l_pid = 5};
	check_errno(fcntl(c, F_OFD_SETLK, &fl), EINVAL, "F_OFD_SETLK with l_pid set: EINVAL");
	close(ro);                       /* closing any fd of the file drops the process's POSIX locks */
	check_ok(setlk(c, F_OFD_SETLK, F_WRLCK, 2, 1), "POSIX locks are gone after a close");

	close(a);
	close(b);
	close(c);
	unlink(F);
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);
	return tap_done();
}
