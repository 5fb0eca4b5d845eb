/*
 * io_splice: splice tee vmsplice, and sendfile to a pipe from a socket
 * (Linux 5.12+), between pipes, a unix socket pair and a scratch file
 * under /tmp (removed again).
 *
 * splice file->pipe with and without an offset pointer (the pointer moves,
 * the file offset does not; without it the file offset moves), pipe->file,
 * pipe->pipe; tee copies without consuming; vmsplice in and out of a pipe.
 * Errno paths: unknown flags EINVAL, an offset for a pipe ESPIPE, neither
 * side a pipe EINVAL, both ends of one pipe EINVAL, SPLICE_F_NONBLOCK on an
 * empty pipe EAGAIN, a pipe with no writers 0, tee on a file EINVAL,
 * vmsplice on a file EBADF, sendfile from a pipe EINVAL.
 */
#include "tap.h"
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#define F "/tmp/io_splice.f"

int main(void)
{
	struct stat tmp_st;
	struct timespec ts[2];
	char buf[64];
	loff_t off;
	int fd, p[2], q[2], s[2];
	struct iovec iv = {buf, sizeof buf};
	struct iovec ov = {"vmspliced", 9};

	tap_plan(34);
	stat("/tmp", &tmp_st);
	fd = open(F, O_CREAT | O_RDWR | O_TRUNC, 0644);
	check_eq(write(fd, "0123456789", 10), 10, "write the file");
	check_ok(pipe(p), "pipe p");
	check_ok(pipe(q), "pipe q");
	off = 2;
	check_eq(splice(fd, &off, p[1], NULL, 3, 0), 3, "splice file->pipe from an offset");
	check_eq(off, 5, "the offset pointer moved");
	check_eq(lseek(fd, 0, SEEK_CUR), 10, "the file offset did not");
	lseek(fd, 7, SEEK_SET);
	check_eq(splice(fd, NULL, p[1], NULL, 100, 0), 3, "splice file->pipe at the file offset, short at EOF");
	check_eq(lseek(fd, 0, SEEK_CUR), 10, "the file offset moved");
	check_eq(tee(p[0], q[1], 100, 0), 6, "tee copies what the pipe holds");
	check_eq(splice(p[0], NULL, fd, NULL, 2, 0), 2, "splice pipe->file at the file offset");
	check_eq(pread(fd, buf, 12, 0), 12, "the file grew");
	check_mem(buf, "0123456789" "23", 12, "content after splice pipe->file");
	off = 0;
	check_eq(splice(p[0], NULL, fd, &off, 1, 0), 1, "splice pipe->file at an offset");
	check_eq(off, 1, "the output offset pointer moved");
	check_eq(pread(fd, buf, 1, 0), 1, "read it back");
	check_mem(buf, "4", 1, "splice overwrote byte 0");
	check_eq(splice(q[0], NULL, p[1], NULL, 100, 0), 6, "splice pipe->pipe");
	check_eq(read(p[0], buf, sizeof buf), 9, "the pipe holds the rest and the tee'd copy");
	check_mem(buf, "789" "234789", 9, "pipe content");

	check_errno(splice(fd, NULL, p[1], NULL, 1, 0x100), EINVAL, "splice unknown flag: EINVAL");
	off = 0;
	check_errno(splice(p[0], &off, fd, NULL, 1, 0), ESPIPE, "splice with an offset for the pipe: ESPIPE");
	check_errno(splice(fd, NULL, fd, NULL, 1, 0), EINVAL, "splice file->file: EINVAL");
	check_errno(splice(p[0], NULL, p[1], NULL, 1, 0), EINVAL, "splice within one pipe: EINVAL");
	check_errno(splice(p[0], NULL, fd, NULL, 1, SPLICE_F_NONBLOCK), EAGAIN, "SPLICE_F_NONBLOCK on an empty pipe: EAGAIN");
	check_errno(tee(fd, p[1], 1, 0), EINVAL, "tee from a file: EINVAL");
	check_errno(vmsplice(fd, &ov, 1, 0), EBADF, "vmsplice on a file: EBADF");
	check_eq(vmsplice(p[1], &ov, 1, 0), 9, "vmsplice into the pipe");
	check_eq(vmsplice(p[0], &iv, 1, 0), 9, "vmsplice out of the pipe");
	check_mem(buf, "vmspliced", 9, "vmspliced content");
	check_errno(sendfile(fd, p[0], NULL, 1), EINVAL, "sendfile from a pipe: EINVAL");

	check_ok(socketpair(AF_UNIX, SOCK_STREAM, 0, s), "socketpair");
	check_eq(write(s[0], "sock", 4), 4, "write to the socket");
	check_eq(sendfile(p[1], s[1], NULL, 100), 4, "sendfile socket->pipe");
	close(q[1]);
	check_eq(splice(q[0], NULL, fd, NULL, 5, 0), 0, "splice from a pipe with no writers: 0");
	close(fd);
	unlink(F);
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);
	return tap_done();
}
