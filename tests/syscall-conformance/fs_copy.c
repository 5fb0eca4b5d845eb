/*
 * fs_copy: sendfile(2) and copy_file_range(2) between files under /tmp
 * (removed again), and sendfile to a pipe.
 *
 * sendfile with and without an offset pointer (the file offset moves only
 * without one, the pointer is advanced), short at EOF, 0 at EOF;
 * copy_file_range with both offsets given or taken from the files.
 * Errno paths: EBADF (write-only source, read-only destination, bad fd),
 * EINVAL (O_APPEND destination for sendfile, flags for copy_file_range,
 * overlapping ranges of one file), EISDIR (a directory).
 */
#include "tap.h"
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>

#define A "/tmp/fs_copy.a"
#define B "/tmp/fs_copy.b"

int main(void)
{
	struct stat tmp_st;
	struct timespec ts[2];
	char buf[64];
	off_t off;
	loff_t in_off, out_off;
	int a, b, ap, p[2], d;

	tap_plan(24);
	stat("/tmp", &tmp_st);
	a = open(A, O_CREAT | O_RDWR | O_TRUNC, 0644);
	check_eq(write(a, "0123456789abcdef", 16), 16, "write the source");
	b = open(B, O_CREAT | O_RDWR | O_TRUNC, 0644);
	lseek(a, 0, SEEK_SET);
	check_eq(sendfile(b, a, NULL, 4), 4, "sendfile 4 bytes from the file offset");
	check_eq(lseek(a, 0, SEEK_CUR), 4, "the source offset moved");
	off = 10;
	check_eq(sendfile(b, a, &off, 100), 6, "sendfile from an offset, short at EOF");
	check_eq(off, 16, "the offset pointer was advanced");
	check_eq(lseek(a, 0, SEEK_CUR), 4, "the source offset did not move");
	check_eq(sendfile(b, a, &off, 10), 0, "sendfile at EOF: 0");
	check_eq(pread(b, buf, sizeof buf, 0), 10, "destination size");
	check_mem(buf, "0123abcdef", 10, "destination content");
	check_ok(pipe(p), "pipe");
	off = 0;
	check_eq(sendfile(p[1], a, &off, 5), 5, "sendfile to a pipe");
	check_eq(read(p[0], buf, sizeof buf), 5, "read it from the pipe");
	ap = open(B, O_WRONLY | O_APPEND);
	check_errno(sendfile(ap, a, NULL, 1), EINVAL, "sendfile to an O_APPEND file: EINVAL");
	close(ap);
	check_errno(sendfile(b, p[1], NULL, 1), EBADF, "sendfile from a write-only fd: EBADF");
	check_errno(sendfile(-1, a, NULL, 1), EBADF, "sendfile to fd -1: EBADF");

	in_off = 0;
	out_off = 100;
	check_eq(copy_file_range(a, &in_off, b, &out_off, 8, 0), 8, "copy_file_range with offsets");
	check(in_off == 8 && out_off == 108, "both offsets advanced");
	check_eq(pread(b, buf, 8, 100), 8, "read the copy");
	check_mem(buf, "01234567", 8, "copied content");
	lseek(a, 12, SEEK_SET);
	lseek(b, 0, SEEK_SET);
	check_eq(copy_file_range(a, NULL, b, NULL, 100, 0), 4, "copy_file_range from the file offsets, short at EOF");
	check_errno(copy_file_range(a, NULL, b, NULL, 1, 1), EINVAL, "copy_file_range flags: EINVAL");
	in_off = 0;
	out_off = 2;
	check_errno(copy_file_range(a, &in_off, a, &out_off, 4, 0), EINVAL, "overlapping ranges of one file: EINVAL");
	d = open("/tmp", O_RDONLY | O_DIRECTORY);
	check_errno(copy_file_range(d, NULL, b, NULL, 1, 0), EISDIR, "from a directory: EISDIR");
	close(d);
	ap = open(A, O_RDONLY);
	check_errno(copy_file_range(a, NULL, ap, NULL, 1, 0), EBADF, "to a read-only fd: EBADF");
	close(ap);
	close(a);
	close(b);
	unlink(A);
	unlink(B);
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);
	return tap_done();
}
