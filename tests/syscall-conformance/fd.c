/*
 * fd: dup, dup2, dup3, fcntl (F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD,
 * F_GETFL, F_SETFL) and ioctl (TCGETS, TIOCGWINSZ on non-terminals).
 *
 * Success paths: duplicates take the lowest free fd (or the one asked for),
 * share the file offset and status flags but not FD_CLOEXEC; dup2 onto an
 * open fd replaces it, dup2 onto itself is a no-op; F_GETFL reports the
 * access mode plus O_LARGEFILE (never O_CLOEXEC); F_SETFL changes only
 * O_APPEND/O_NONBLOCK-type flags, never the access mode; F_SETFD keeps only
 * FD_CLOEXEC.  Errno paths: EBADF (bad old fd, negative or too-high new
 * fd), EINVAL (dup3 onto itself, dup3 bad flags, F_DUPFD below 0 or at
 * RLIMIT_NOFILE, unknown fcntl command), ENOTTY (terminal ioctls on a
 * file, a directory and /dev/null; ENOTTY even with a bad argument pointer,
 * since the pointer is never looked at).
 */
#include "tap.h"
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <termios.h>

#define K_O_LARGEFILE 0100000 /* the kernel's O_LARGEFILE; glibc's is 0 on x86_64 */

static long getfl(int fd) { return fcntl(fd, F_GETFL); }

int main(void)
{
	struct termios tio;
	struct winsize ws;
	struct rlimit rl;
	char c;
	int fd, fd2, fd3, dirfd, nullfd, lowest;

	tap_plan(75);

	check_ok(getrlimit(RLIMIT_NOFILE, &rl), "getrlimit RLIMIT_NOFILE");
	fd = check_ok(open("/fixtures/file.txt", O_RDONLY), "open file.txt");

	/* dup */
	fd2 = check_ok(dup(fd), "dup");
	check_eq(fd2, fd + 1, "dup takes the lowest free fd");
	check_eq(lseek(fd, 5, SEEK_SET), 5, "lseek the original");
	check_eq(lseek(fd2, 0, SEEK_CUR), 5, "the duplicate shares the file offset");
	check(read(fd2, &c, 1) == 1 && c == '5', "reading the duplicate reads at the shared offset");
	check_eq(lseek(fd, 0, SEEK_CUR), 6, "reading the duplicate moves the original's offset");
	check_errno(dup(-1), EBADF, "dup -1 is EBADF");
	check_errno(dup(fd2 + 100), EBADF, "dup of an fd never opened is EBADF");
	close(fd2);
	check_errno(dup(fd2), EBADF, "dup of a closed fd is EBADF");

	/* dup2 */
	check_eq(dup2(fd, fd), fd, "dup2 onto itself returns the fd");
	check_errno(dup2(fd2, fd2), EBADF, "dup2 of a closed fd onto itself is EBADF");
	check_eq(dup2(fd, 100), 100, "dup2 onto a chosen fd");
	check_eq(lseek(100, 0, SEEK_CUR), 6, "the dup2 copy shares the offset");
	nullfd = check_ok(open("/dev/null", O_RDONLY), "open /dev/null");
	check_eq(dup2(fd, nullfd), nullfd, "dup2 onto an open fd");
	check_eq(lseek(nullfd, 0, SEEK_CUR), 6, "dup2 replaced the open fd with the file");
	close(nullfd);
	check_ok(fcntl(fd, F_SETFD, FD_CLOEXEC), "set FD_CLOEXEC on the original");
	check_eq(dup2(fd, 101), 101, "dup2 from a close-on-exec fd");
	check_eq(fcntl(101, F_GETFD), 0, "dup2 does not copy FD_CLOEXEC");
	check_ok(fcntl(fd, F_SETFD, 0), "clear FD_CLOEXEC on the original");
	check_errno(dup2(-1, 102), EBADF, "dup2 from -1 is EBADF");
	check_errno(dup2(fd, -1), EBADF, "dup2 onto -1 is EBADF");
	check_errno(dup2(fd, (int)rl.rlim_cur), EBADF, "dup2 onto RLIMIT_NOFILE is EBADF");
	check_errno(fcntl(102, F_GETFD), EBADF, "a failed dup2 creates nothing");

	/* dup3 */
	check_eq(dup3(fd, 102, O_CLOEXEC), 102, "dup3 O_CLOEXEC");
	check_eq(fcntl(102, F_GETFD), FD_CLOEXEC, "dup3 O_CLOEXEC sets FD_CLOEXEC");
	check_eq(dup3(fd, 103, 0), 103, "dup3 without flags");
	check_eq(fcntl(103, F_GETFD), 0, "dup3 without flags leaves FD_CLOEXEC clear");
	check_errno(dup3(fd, fd, 0), EINVAL, "dup3 onto itself is EINVAL");
	check_errno(dup3(fd, 104, O_NONBLOCK), EINVAL, "dup3 with O_NONBLOCK is EINVAL");
	check_errno(dup3(-1, 104, 0), EBADF, "dup3 from -1 is EBADF");
	check_errno(dup3(fd, -1, 0), EBADF, "dup3 onto -1 is EBADF");

	/* F_DUPFD, F_DUPFD_CLOEXEC */
	check_eq(fcntl(fd, F_DUPFD, 100), 104, "F_DUPFD takes the lowest free fd >= arg");
	check_eq(fcntl(104, F_GETFD), 0, "F_DUPFD leaves FD_CLOEXEC clear");
	check_eq(fcntl(fd, F_DUPFD_CLOEXEC, 200), 200, "F_DUPFD_CLOEXEC at a free fd");
	check_eq(fcntl(200, F_GETFD), FD_CLOEXEC, "F_DUPFD_CLOEXEC sets FD_CLOEXEC");
	lowest = check_ok(fcntl(fd, F_DUPFD, 0), "F_DUPFD 0");
	check_eq(lowest, fd2, "F_DUPFD 0 takes the lowest free fd");
	check_errno(fcntl(fd, F_DUPFD, -1), EINVAL, "F_DUPFD with a negative minimum is EINVAL");
	check_errno(fcntl(fd, F_DUPFD, (int)rl.rlim_cur), EINVAL, "F_DUPFD at RLIMIT_NOFILE is EINVAL");
	check_errno(fcntl(-1, F_DUPFD, 0), EBADF, "F_DUPFD of -1 is EBADF");
	for (fd3 = 100; fd3 <= 104; fd3++)
		close(fd3);
	close(200);
	close(lowest);

	/* F_GETFD, F_SETFD */
	check_eq(fcntl(fd, F_GETFD), 0, "F_GETFD on a plain fd is 0");
	check_eq(fcntl(fd, F_SETFD, 0xff), 0, "F_SETFD with extra bits");
	check_eq(fcntl(fd, F_GETFD), FD_CLOEXEC, "F_SETFD keeps only FD_CLOEXEC");
	check_eq(fcntl(fd, F_SETFD, 0), 0, "F_SETFD 0");
	check_eq(fcntl(fd, F_GETFD), 0, "F_GETFD after clearing is 0");
	check_errno(fcntl(-1, F_GETFD), EBADF, "F_GETFD of -1 is EBADF");
	check_errno(fcntl(fd2, F_SETFD, 1), EBADF, "F_SETFD of a closed fd is EBADF");

	/* F_GETFL, F_SETFL */
	check_eq(getfl(fd), O_RDONLY | K_O_LARGEFILE, "F_GETFL of an O_RDONLY file is O_RDONLY|O_LARGEFILE");
	fd2 = check_ok(open("/fixtures/file.txt", O_RDONLY | O_CLOEXEC | O_NONBLOCK), "open O_CLOEXEC|O_NONBLOCK");
	check_eq(getfl(fd2), O_NONBLOCK | K_O_LARGEFILE, "F_GETFL shows O_NONBLOCK but not O_CLOEXEC");
	close(fd2);
	fd3 = check_ok(open("/dev/null", O_RDWR | O_APPEND), "open /dev/null O_RDWR|O_APPEND");
	check_eq(getfl(fd3), O_RDWR | O_APPEND | K_O_LARGEFILE, "F_GETFL of O_RDWR|O_APPEND");
	check_eq(fcntl(fd3, F_SETFL, 0), 0, "F_SETFL 0");
	check_eq(getfl(fd3), O_RDWR | K_O_LARGEFILE, "F_SETFL 0 clears O_APPEND, keeps O_RDWR");
	close(fd3);
	fd2 = check_ok(dup(fd), "dup for F_SETFL");
	check_eq(fcntl(fd, F_SETFL, O_WRONLY | O_NONBLOCK | O_APPEND | O_CREAT | O_TRUNC | O_EXCL), 0,
		 "F_SETFL with access-mode and creation bits");
	check_eq(getfl(fd), O_RDONLY | O_NONBLOCK | O_APPEND | K_O_LARGEFILE,
		 "F_SETFL changes O_NONBLOCK|O_APPEND only");
	check_eq(getfl(fd2), O_RDONLY | O_NONBLOCK | O_APPEND | K_O_LARGEFILE,
		 "status flags are shared with a dup");
	check_eq(fcntl(fd, F_SETFL, 0), 0, "F_SETFL 0 again");
	check_eq(getfl(fd2), O_RDONLY | K_O_LARGEFILE, "the dup sees the flags cleared");
	close(fd2);
	check_errno(fcntl(-1, F_GETFL), EBADF, "F_GETFL of -1 is EBADF");
	check_errno(fcntl(-1, F_SETFL, 0), EBADF, "F_SETFL of -1 is EBADF");
	check_errno(fcntl(fd, 12345), EINVAL, "an unknown fcntl command is EINVAL");

	/* ioctl on non-terminals */
	check_errno(ioctl(fd, TCGETS, &tio), ENOTTY, "TCGETS on a file is ENOTTY");
	check_errno(ioctl(fd, TIOCGWINSZ, &ws), ENOTTY, "TIOCGWINSZ on a file is ENOTTY");
	check_errno(ioctl(fd, TCGETS, BAD_PTR), ENOTTY, "TCGETS on a file with a bad pointer is still ENOTTY");
	dirfd = check_ok(open("/fixtures/dir", O_RDONLY | O_DIRECTORY), "open a directory");
	check_errno(ioctl(dirfd, TCGETS, &tio), ENOTTY, "TCGETS on a directory is ENOTTY");
	close(dirfd);
	nullfd = check_ok(open("/dev/null", O_RDWR), "open /dev/null");
	check_errno(ioctl(nullfd, TCGETS, &tio), ENOTTY, "TCGETS on /dev/null is ENOTTY");
	check_errno(ioctl(nullfd, TIOCGWINSZ, &ws), ENOTTY, "TIOCGWINSZ on /dev/null is ENOTTY");
	close(nullfd);
	check_errno(ioctl(-1, TCGETS, &tio), EBADF, "TCGETS on -1 is EBADF");

	close(fd);
	return tap_done();
}
