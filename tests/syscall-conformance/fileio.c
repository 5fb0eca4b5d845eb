/*
 * fileio: read, write, readv, writev, pread64, pwrite64, lseek.
 *
 * Success paths: reads of /fixtures/file.txt at every offset and through
 * several iovecs, the file offset moving (or, for pread64, not moving),
 * lseek with SEEK_SET/SEEK_CUR/SEEK_END/SEEK_DATA/SEEK_HOLE and past EOF,
 * writes to stdout (as TAP comments) and to /dev/null, reads of /dev/zero
 * and /dev/null.  Errno paths: EBADF (negative, closed, huge, wrong access
 * mode), EFAULT (bad buffer, bad iovec array, kernel address), EINVAL (bad
 * whence, negative offsets, bad iovcnt, negative iov_len), EISDIR (reading a
 * directory), ENXIO (SEEK_DATA at EOF), ENOSPC (/dev/full).  And where
 * Linux never touches the buffer, a bad pointer is no error: a read at EOF
 * returns 0, a write to /dev/null returns the count.  ESPIPE is not checked
 * (it needs a pipe, which the sandbox does not have yet).
 * Nothing is written to the filesystem.
 */
#include "tap.h"
#include "fixtures.h"
#include <fcntl.h>
#include <sys/uio.h>

#define KERNEL_PTR ((void *)0xffffffffff600000UL) /* not a user address */

int main(void)
{
	char buf[128];
	struct iovec iov[3];
	int fd, dirfd, nullfd, zerofd, fullfd, closedfd;

	tap_plan(79);

	/* read */
	fd = check_ok(open("/fixtures/file.txt", O_RDONLY), "open file.txt");
	check_eq(read(fd, buf, 10), 10, "read 10 bytes");
	check_mem(buf, "0123456789", 10, "read returns the first 10 bytes");
	check_eq(read(fd, buf, sizeof(buf)), FILE_LEN - 10, "read stops at EOF (short read)");
	check_mem(buf, FILE_TXT + 10, FILE_LEN - 10, "read returns the rest of the file");
	check_eq(read(fd, buf, sizeof(buf)), 0, "read at EOF returns 0");
	check_eq(read(fd, buf, 0), 0, "read of 0 bytes returns 0");
	check_eq(read(fd, BAD_PTR, 10), 0, "read at EOF never touches the buffer: a bad pointer returns 0");
	check_errno(read(-1, buf, 1), EBADF, "read fd -1 is EBADF");
	check_errno(read(9999, buf, 1), EBADF, "read fd 9999 is EBADF");

	/* lseek */
	check_eq(lseek(fd, 5, SEEK_SET), 5, "lseek SEEK_SET 5");
	check_eq(read(fd, buf, 3), 3, "read 3 after lseek");
	check_mem(buf, "567", 3, "read after lseek sees offset 5");
	check_eq(lseek(fd, 0, SEEK_CUR), 8, "lseek SEEK_CUR 0 reports the offset read moved to");
	check_eq(lseek(fd, -2, SEEK_CUR), 6, "lseek SEEK_CUR -2");
	check_eq(lseek(fd, 0, SEEK_END), FILE_LEN, "lseek SEEK_END 0 is the size");
	check_eq(lseek(fd, -7, SEEK_END), FILE_LEN - 7, "lseek SEEK_END -7");
	check_eq(read(fd, buf, sizeof(buf)), 7, "read 7 after SEEK_END -7");
	check_mem(buf, "uvwxyz\n", 7, "read after SEEK_END -7 sees the tail");
	check_eq(lseek(fd, 100, SEEK_SET), 100, "lseek past EOF is allowed");
	check_eq(read(fd, buf, sizeof(buf)), 0, "read past EOF returns 0");
	check_eq(lseek(fd, 0, SEEK_DATA), 0, "lseek SEEK_DATA 0 is 0");
	check_eq(lseek(fd, 0, SEEK_HOLE), FILE_LEN, "lseek SEEK_HOLE 0 is the size");
	check_errno(lseek(fd, FILE_LEN, SEEK_DATA), ENXIO, "lseek SEEK_DATA at EOF is ENXIO");
	check_errno(lseek(fd, -1, SEEK_SET), EINVAL, "lseek to a negative offset is EINVAL");
	check_errno(lseek(fd, -1000, SEEK_END), EINVAL, "lseek SEEK_END before the start is EINVAL");
	check_errno(lseek(fd, 0, 42), EINVAL, "lseek with whence 42 is EINVAL");
	check_eq(lseek(fd, 0, SEEK_CUR), FILE_LEN, "failed lseek calls leave the offset where SEEK_HOLE put it");
	check_errno(lseek(-1, 0, SEEK_SET), EBADF, "lseek fd -1 is EBADF");

	check_eq(lseek(fd, 0, SEEK_SET), 0, "lseek SEEK_SET 0 rewinds");
	check_errno(read(fd, BAD_PTR, 10), EFAULT, "read into a bad pointer is EFAULT");
	check_eq(lseek(fd, 0, SEEK_CUR), 0, "a failed read leaves the offset alone");

	/* readv */
	memset(buf, '.', sizeof(buf));
	iov[0] = (struct iovec){ buf, 4 };
	iov[1] = (struct iovec){ buf + 50, 0 };
	iov[2] = (struct iovec){ buf + 60, 6 };
	check_eq(readv(fd, iov, 3), 10, "readv into 4+0+6 bytes returns 10");
	check(memcmp(buf, "0123", 4) == 0 && memcmp(buf + 60, "456789", 6) == 0 && buf[50] == '.',
	      "readv scatters the data in iovec order");
	check_eq(readv(fd, iov, 0), 0, "readv with iovcnt 0 returns 0");
	check_errno(syscall(SYS_readv, fd, iov, -1), EINVAL, "readv with iovcnt -1 is EINVAL");
	check_errno(syscall(SYS_readv, fd, iov, 1025), EINVAL, "readv with iovcnt > UIO_MAXIOV is EINVAL");
	check_errno(readv(fd, BAD_PTR, 1), EFAULT, "readv with a bad iovec array is EFAULT");
	iov[0] = (struct iovec){ BAD_PTR, 4 };
	check_errno(readv(fd, iov, 1), EFAULT, "readv into a bad iov_base is EFAULT");
	iov[0] = (struct iovec){ buf, (size_t)-1 };
	check_errno(readv(fd, iov, 1), EINVAL, "readv with a negative iov_len is EINVAL");
	check_errno(readv(-1, iov, 1), EBADF, "readv fd -1 is EBADF");
	check_eq(lseek(fd, 0, SEEK_CUR), 10, "failed readv calls leave the offset alone");

	/* pread64 */
	check_eq(pread(fd, buf, 7, 30), 7, "pread 7 bytes at offset 30");
	check_mem(buf, "uvwxyz\n", 7, "pread returns the bytes at its offset");
	check_eq(lseek(fd, 0, SEEK_CUR), 10, "pread does not move the file offset");
	check_eq(pread(fd, buf, 10, FILE_LEN), 0, "pread at EOF returns 0");
	check_errno(pread(fd, buf, 1, -1), EINVAL, "pread at a negative offset is EINVAL");
	check_errno(pread(fd, BAD_PTR, 1, 0), EFAULT, "pread into a bad pointer is EFAULT");
	check_errno(pread(-1, buf, 1, 0), EBADF, "pread fd -1 is EBADF");

	/* write on a read-only fd */
	check_errno(write(fd, "x", 1), EBADF, "write to an O_RDONLY fd is EBADF");
	check_errno(pwrite(fd, "x", 1, 0), EBADF, "pwrite to an O_RDONLY fd is EBADF");
	iov[0] = (struct iovec){ "x", 1 };
	check_errno(writev(fd, iov, 1), EBADF, "writev to an O_RDONLY fd is EBADF");

	/* closed fds */
	closedfd = fd;
	check_eq(close(fd), 0, "close file.txt");
	check_errno(read(closedfd, buf, 1), EBADF, "read a closed fd is EBADF");
	check_errno(write(closedfd, "x", 1), EBADF, "write a closed fd is EBADF");

	/* directories */
	dirfd = check_ok(open("/fixtures/dir", O_RDONLY | O_DIRECTORY), "open a directory");
	check_errno(read(dirfd, buf, sizeof(buf)), EISDIR, "read a directory is EISDIR");
	check_errno(pread(dirfd, buf, sizeof(buf), 0), EISDIR, "pread a directory is EISDIR");
	check_errno(write(dirfd, "x", 1), EBADF, "write a directory fd is EBADF");
	check_eq(lseek(dirfd, 0, SEEK_SET), 0, "lseek a directory to 0");
	close(dirfd);

	/* write to stdout: the lines are TAP comments */
	check_eq(write(1, "# write to stdout\n", 18), 18, "write 18 bytes to stdout");
	iov[0] = (struct iovec){ "# writev", 8 };
	iov[1] = (struct iovec){ "", 0 };
	iov[2] = (struct iovec){ " to stdout\n", 11 };
	check_eq(writev(1, iov, 3), 19, "writev 8+0+11 bytes to stdout");
	check_eq(write(1, buf, 0), 0, "write of 0 bytes to stdout returns 0");
	check_errno(write(-1, "x", 1), EBADF, "write fd -1 is EBADF");

	/* devices */
	nullfd = check_ok(open("/dev/null", O_RDWR), "open /dev/null");
	check_eq(write(nullfd, "hello", 5), 5, "write 5 bytes to /dev/null");
	check_eq(write(nullfd, BAD_PTR, 10), 10, "/dev/null never reads the buffer: a bad user pointer is accepted");
	check_errno(write(nullfd, KERNEL_PTR, 10), EFAULT, "write from a kernel address is EFAULT");
	check_eq(pwrite(nullfd, "hello", 5, 1000), 5, "pwrite 5 bytes to /dev/null");
	check_errno(pwrite(nullfd, "hello", 5, -1), EINVAL, "pwrite at a negative offset is EINVAL");
	check_eq(read(nullfd, buf, sizeof(buf)), 0, "read /dev/null returns 0");
	iov[0] = (struct iovec){ "x", 1 };
	check_errno(syscall(SYS_writev, nullfd, iov, 1025), EINVAL, "writev with iovcnt > UIO_MAXIOV is EINVAL");
	check_errno(writev(nullfd, BAD_PTR, 1), EFAULT, "writev with a bad iovec array is EFAULT");
	close(nullfd);

	zerofd = check_ok(open("/dev/zero", O_RDONLY), "open /dev/zero");
	memset(buf, 0xff, sizeof(buf));
	check_eq(read(zerofd, buf, 16), 16, "read 16 bytes of /dev/zero");
	check_mem(buf, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16, "/dev/zero reads zeros");
	check_errno(read(zerofd, BAD_PTR, 16), EFAULT, "read /dev/zero into a bad pointer is EFAULT");
	close(zerofd);

	fullfd = check_ok(open("/dev/full", O_WRONLY), "open /dev/full");
	check_errno(write(fullfd, "x", 1), ENOSPC, "write /dev/full is ENOSPC");
	close(fullfd);

	return tap_done();
}
