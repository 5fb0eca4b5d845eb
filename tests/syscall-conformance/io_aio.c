/*
 * io_aio: Linux AIO through the raw syscalls (as libaio makes them):
 * io_setup io_submit io_getevents io_pgetevents io_cancel io_destroy on a
 * scratch file under /tmp (removed again) -- PWRITE, PREAD, PREADV, FSYNC,
 * IOCB_FLAG_RESFD signalling an eventfd; errno paths (NOOP after others: the count so far, nr_events 0,
 * *ctxp not 0, an unknown context, min_nr > nr, an unknown opcode, a bad fd,
 * cancelling a completed request).
 */
#include "tap.h"
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>

#define F "/tmp/io_aio.f"

static struct iocb cb(int op, int fd, void *buf, size_t n, long off)
{
	struct iocb c;
	memset(&c, 0, sizeof c);
	c.aio_lio_opcode = op;
	c.aio_fildes = fd;
	c.aio_buf = (uintptr_t)buf;
	c.aio_nbytes = n;
	c.aio_offset = off;
	c.aio_data = 0x1234 + op;
	return c;
}

int main(void)
{
	struct stat tmp_st;
	struct timespec ts[2], zero = {0, 0};
	aio_context_t ctx = 0, ctx2 = 5;
	struct iocb c[4], *cp[4];
	struct io_event ev[8];
	char rbuf[16] = {0}, a[3], b[4];
	struct iovec v[2] = {{a, 3}, {b, 4}};
	uint64_t n;
	int fd, efd;

	tap_plan(24);
	stat("/tmp", &tmp_st);
	fd = open(F, O_CREAT | O_RDWR | O_TRUNC, 0644);
	efd = eventfd(0, EFD_NONBLOCK);
	check_errno(syscall(SYS_io_setup, 0, &ctx), EINVAL, "io_setup of 0 events: EINVAL");
	check_errno(syscall(SYS_io_setup, 8, &ctx2), EINVAL, "io_setup with *ctxp != 0: EINVAL");
	check_ok(syscall(SYS_io_setup, 8, &ctx), "io_setup 8");
	check(ctx != 0, "a context id");
	c[0] = cb(IOCB_CMD_PWRITE, fd, "hello, aio", 10, 0);
	c[0].aio_flags = IOCB_FLAG_RESFD;
	c[0].aio_resfd = efd;
	c[1] = cb(IOCB_CMD_FSYNC, fd, NULL, 0, 0);
	for (int i = 0; i < 4; i++)
		cp[i] = &c[i];
	check_eq(syscall(SYS_io_submit, ctx, 2, cp), 2, "io_submit PWRITE and FSYNC");
	check_eq(syscall(SYS_io_getevents, ctx, 2, 8, ev, NULL), 2, "io_getevents: both completed");
	check_eq((long)ev[0].res, 10, "the write's result");
	check_eq((long)ev[0].data, 0x1234 + IOCB_CMD_PWRITE, "its aio_data");
	check(ev[0].obj == (uintptr_t)&c[0], "its iocb");
	check_eq((long)ev[1].res, 0, "the fsync's result");
	check_eq(read(efd, &n, 8), 8, "the eventfd was signalled");
	check_eq((long)n, 1, "once");
	c[0] = cb(IOCB_CMD_PREAD, fd, rbuf, 16, 7);
	c[1] = cb(IOCB_CMD_PREADV, fd, v, 2, 0);
	c[2] = cb(IOCB_CMD_NOOP, fd, NULL, 0, 0);
	check_eq(syscall(SYS_io_submit, ctx, 3, cp), 2, "io_submit PREAD PREADV NOOP: NOOP is refused, 2 went in");
	check_eq(syscall(SYS_io_pgetevents, ctx, 1, 8, ev, &zero, NULL), 2, "io_pgetevents takes both");
	check_eq((long)ev[0].res, 3, "PREAD short at EOF");
	check_mem(rbuf, "aio", 3, "its bytes");
	check_eq((long)ev[1].res, 7, "PREADV");
	check_mem(b, "lo, ", 4, "the second vector");
	check_eq(syscall(SYS_io_getevents, ctx, 0, 8, ev, &zero), 0, "nothing left");
	check_errno(syscall(SYS_io_getevents, ctx, 3, 2, ev, &zero), EINVAL, "min_nr > nr: EINVAL");
	c[0] = cb(99, fd, NULL, 0, 0);
	check_errno(syscall(SYS_io_submit, ctx, 1, cp), EINVAL, "unknown opcode: EINVAL");
	c[0] = cb(IOCB_CMD_PREAD, 999, rbuf, 1, 0);
	check_errno(syscall(SYS_io_submit, ctx, 1, cp), EBADF, "bad fd: EBADF");
	check_ok(syscall(SYS_io_destroy, ctx), "io_destroy");
	check_errno(syscall(SYS_io_destroy, ctx), EINVAL, "io_destroy again: EINVAL");
	close(fd);
	unlink(F);
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);
	return tap_done();
}
