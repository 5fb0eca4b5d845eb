/*
 * io_vectored: preadv pwritev preadv2 pwritev2 readahead on a scratch file
 * under /tmp (removed again), a pipe and /dev/null.
 *
 * preadv/pwritev leave the file offset alone; preadv2/pwritev2 with offset -1
 * use and advance it (and so work on a pipe); RWF_APPEND appends whatever the
 * offset, RWF_NOAPPEND writes at the offset of an O_APPEND file; RWF_HIPRI is
 * accepted; RWF_NOWAIT on an empty pipe is EAGAIN.  Errno paths: negative
 * offset EINVAL, a pipe with an offset ESPIPE, wrong access mode EBADF, an
 * unknown RWF_ flag EOPNOTSUPP, more than IOV_MAX vectors EINVAL, a bad iovec
 * EFAULT, readahead on a pipe EINVAL and on a write-only fd EBADF.
 */
#include "tap.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>

#define F "/tmp/io_vectored.f"
#ifndef RWF_HIPRI
#define RWF_HIPRI 1
#endif
#ifndef RWF_NOWAIT
#define RWF_NOWAIT 8
#endif
#ifndef RWF_APPEND
#define RWF_APPEND 0x10
#endif
#ifndef RWF_NOAPPEND
#define RWF_NOAPPEND 0x20
#endif

static long p2(long nr, int fd, const struct iovec *iov, int cnt, long off, int flags)
{
	return syscall(nr, fd, iov, cnt, off, 0L, flags);
}

int main(void)
{
	char a[4], b[6], big[32];
	struct iovec rv[2] = {{a, 4}, {b, 6}};
	struct iovec wv[2] = {{"0123", 4}, {"456789", 6}};
	static struct iovec many[1025];
	int fd, ro, p[2];
	struct stat tmp_st;
	struct timespec ts[2];

	tap_plan(31);
	stat("/tmp", &tmp_st);        /* its times are put back at the end: the rootfs stays as it was */
	fd = open(F, O_CREAT | O_RDWR | O_TRUNC, 0644);
	check_eq(syscall(SYS_pwritev, fd, wv, 2, 10L, 0L), 10, "pwritev two vectors at offset 10");
	check_eq(lseek(fd, 0, SEEK_CUR), 0, "pwritev leaves the offset");
	check_eq(syscall(SYS_preadv, fd, rv, 2, 10L, 0L), 10, "preadv two vectors at offset 10");
	check_mem(a, "0123", 4, "first vector");
	check_mem(b, "456789", 6, "second vector");
	check_eq(syscall(SYS_preadv, fd, rv, 2, 16L, 0L), 4, "preadv short at EOF");
	check_eq(syscall(SYS_preadv, fd, rv, 2, 100L, 0L), 0, "preadv past EOF is 0");
	check_eq(syscall(SYS_preadv, fd, rv, 0, 0L, 0L), 0, "preadv of no vectors is 0");
	check_eq(lseek(fd, 0, SEEK_CUR), 0, "preadv leaves the offset");
	check_errno(syscall(SYS_preadv, fd, rv, 2, -1L, 0L), EINVAL, "preadv offset -1: EINVAL");
	check_errno(syscall(SYS_preadv, fd, many, 1025, 0L, 0L), EINVAL, "preadv of 1025 vectors: EINVAL");
	check_errno(syscall(SYS_preadv, fd, (void *)8, 1, 0L, 0L), EFAULT, "preadv of a bad iovec: EFAULT");
	check_errno(syscall(SYS_preadv, 999, rv, 2, 0L, 0L), EBADF, "preadv on a bad fd: EBADF");

	lseek(fd, 10, SEEK_SET);
	check_eq(p2(SYS_preadv2, fd, rv, 1, -1, 0), 4, "preadv2 offset -1 reads at the file offset");
	check_eq(lseek(fd, 0, SEEK_CUR), 14, "and advances it");
	check_eq(p2(SYS_preadv2, fd, rv, 1, 12, RWF_HIPRI), 4, "preadv2 RWF_HIPRI accepted");
	check_mem(a, "2345", 4, "preadv2 at offset 12");
	check_errno(p2(SYS_preadv2, fd, rv, 1, 0, 0x10000), EOPNOTSUPP, "preadv2 unknown flag: EOPNOTSUPP");
	check_errno(p2(SYS_preadv2, fd, rv, 1, -2, 0), EINVAL, "preadv2 offset -2: EINVAL");
	check_eq(p2(SYS_pwritev2, fd, wv, 1, 0, RWF_APPEND), 4, "pwritev2 RWF_APPEND");
	check_eq(lseek(fd, 0, SEEK_END), 24, "it appended at the end");
	check_eq(pread(fd, big, sizeof big, 20), 4, "read the appended bytes");
	check_mem(big, "0123", 4, "appended content");
	close(fd);

	fd = open(F, O_WRONLY | O_APPEND);
	check_eq(p2(SYS_pwritev2, fd, wv, 1, 0, RWF_NOAPPEND), 4, "pwritev2 RWF_NOAPPEND on an O_APPEND fd");
	check_errno(syscall(SYS_preadv, fd, rv, 1, 0L, 0L), EBADF, "preadv on a write-only fd: EBADF");
	check_errno(syscall(SYS_readahead, fd, 0L, 10L), EBADF, "readahead on a write-only fd: EBADF");
	close(fd);
	ro = open(F, O_RDONLY);
	check_eq(syscall(SYS_readahead, ro, 0L, 4096L), 0, "readahead on a regular file");
	close(ro);
	unlink(F);
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);

	check_ok(pipe(p), "pipe");
	check_errno(syscall(SYS_preadv, p[0], rv, 1, 0L, 0L), ESPIPE, "preadv on a pipe: ESPIPE");
	check_errno(p2(SYS_preadv2, p[0], rv, 1, -1, RWF_NOWAIT), EAGAIN, "preadv2 RWF_NOWAIT on an empty pipe: EAGAIN");
	check_errno(syscall(SYS_readahead, p[0], 0L, 10L), EINVAL, "readahead on a pipe: EINVAL");
	return tap_done();
}
