/*
 * pipe_poll: poll ppoll select pselect6 eventfd2 over pipes, /dev/null
 * and regular files, with timeouts and signal masks.
 *
 * Success paths: an empty pipe's read end is not readable, its write end
 * is writable; after a write the read end is POLLIN; after the writer
 * closes it is POLLHUP (with POLLIN while data remains), after the reader
 * closes the write end is POLLERR; /dev/null and regular files are always
 * ready; a negative fd is ignored (revents 0), a closed fd gives POLLNVAL;
 * poll with a 50 ms timeout returns 0 after about 50 ms, a zero timeout
 * returns at once; select/pselect6 set and clear fd_set bits and update
 * the timeval; ppoll/pselect6 install their signal mask for the call only
 * (a blocked pending signal that the mask unblocks interrupts them with
 * EINTR and runs its handler); eventfd2 counter semantics (read returns
 * and resets the sum, EFD_SEMAPHORE reads 1 at a time, readable only when
 * non-zero, EFD_NONBLOCK EAGAIN, a write of 0xffffffffffffffff is EINVAL,
 * a read with a buffer under 8 bytes is EINVAL).  Errno paths: EBADF
 * (select on a closed fd), EINVAL (poll with nfds over RLIMIT_NOFILE,
 * select with negative nfds, ppoll with a bad timespec, eventfd2 with a
 * bad flag 2), EFAULT (poll on a bad array).
 */
#include "tap.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <time.h>

static volatile int hits;
static void handler(int sig) { (void)sig; hits++; }

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* pselect6's last argument: {const sigset_t *ss; size_t ss_len} */
struct kernel_sigset { unsigned long set; unsigned long size; };

int main(void)
{
	int p[2], nul, file, efd;
	struct pollfd pf[4];
	fd_set r, w;
	struct timeval tv;
	struct timespec ts;
	double t0, dt;
	char c;
	uint64_t v;

	tap_plan(47);
	pipe(p);
	nul = open("/dev/null", O_RDWR);
	file = open("/fixtures/file.txt", O_RDONLY);

	/* --- poll basics --- */
	pf[0] = (struct pollfd){p[0], POLLIN, 0};
	pf[1] = (struct pollfd){p[1], POLLOUT, 0};
	pf[2] = (struct pollfd){nul, POLLIN | POLLOUT, 0};
	pf[3] = (struct pollfd){file, POLLIN, 0};
	check_eq(poll(pf, 4, 0), 3, "poll: 3 of 4 ready (empty pipe not readable)");
	check(pf[0].revents == 0 && pf[1].revents == POLLOUT, "empty pipe: read end 0, write end POLLOUT");
	check(pf[2].revents == (POLLIN | POLLOUT) && pf[3].revents == POLLIN, "/dev/null and a file are always ready");
	write(p[1], "x", 1);
	check_eq(poll(pf, 1, 0), 1, "after a write the read end is ready");
	check_eq(pf[0].revents, POLLIN, "POLLIN");
	pf[0].fd = -1;
	pf[0].revents = 0x55;
	check_eq(poll(pf, 1, 0), 0, "a negative fd is ignored");
	check_eq(pf[0].revents, 0, "and its revents is 0");
	{
		int fd = dup(nul);
		close(fd);
		pf[0] = (struct pollfd){fd, POLLIN, 0};
		check_eq(poll(pf, 1, 0), 1, "a closed fd counts as ready");
		check_eq(pf[0].revents, POLLNVAL, "with POLLNVAL");
	}
	t0 = now();
	pf[0] = (struct pollfd){p[0], POLLIN, 0};
	read(p[0], &c, 1);
	check_eq(poll(pf, 1, 50), 0, "poll with a 50 ms timeout on an empty pipe returns 0");
	dt = now() - t0;
	check(dt >= 0.045 && dt < 2.0, "after about 50 ms");
	check_errno(syscall(SYS_poll, BAD_PTR, 1, 0), EFAULT, "poll on a bad array is EFAULT");
	check_errno(syscall(SYS_poll, pf, 0x7fffffff, 0), EINVAL, "poll with nfds over RLIMIT_NOFILE is EINVAL");

	/* --- hang-up and error --- */
	{
		int q[2];
		pipe(q);
		write(q[1], "y", 1);
		close(q[1]);
		pf[0] = (struct pollfd){q[0], POLLIN, 0};
		poll(pf, 1, 0);
		check_eq(pf[0].revents, POLLIN | POLLHUP, "writer closed with data left: POLLIN|POLLHUP");
		read(q[0], &c, 1);
		poll(pf, 1, 0);
		check_eq(pf[0].revents, POLLHUP, "writer closed, drained: POLLHUP");
		close(q[0]);
		pipe(q);
		close(q[0]);
		pf[0] = (struct pollfd){q[1], POLLOUT, 0};
		poll(pf, 1, 0);
		check_eq(pf[0].revents, POLLOUT | POLLERR, "reader closed: POLLOUT|POLLERR on the write end");
		close(q[1]);
	}

	/* --- select / pselect6 --- */
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_SET(p[0], &r);
	FD_SET(p[1], &w);
	tv = (struct timeval){0, 0};
	check_eq(select(p[1] + 1, &r, &w, NULL, &tv), 1, "select: only the write end is ready");
	check(!FD_ISSET(p[0], &r) && FD_ISSET(p[1], &w), "select cleared the read bit, kept the write bit");
	FD_ZERO(&r);
	FD_SET(p[0], &r);
	tv = (struct timeval){0, 50000};
	t0 = now();
	check_eq(select(p[0] + 1, &r, NULL, NULL, &tv), 0, "select with a 50 ms timeout returns 0");
	dt = now() - t0;
	check(dt >= 0.045 && dt < 2.0 && tv.tv_sec == 0 && tv.tv_usec == 0, "after ~50 ms, timeval updated to 0");
	if (!(dt >= 0.045 && dt < 2.0 && tv.tv_sec == 0 && tv.tv_usec == 0))
		tap_note("dt=%.3f tv=%ld.%06ld", dt, (long)tv.tv_sec, (long)tv.tv_usec);
	write(p[1], "x", 1);
	FD_ZERO(&r);
	FD_SET(p[0], &r);
	tv = (struct timeval){5, 0};
	check_eq(select(p[0] + 1, &r, NULL, NULL, &tv), 1, "select sees the readable pipe");
	check(FD_ISSET(p[0], &r) && tv.tv_sec >= 4, "bit set, most of the timeout left");
	read(p[0], &c, 1);
	{
		int fd = dup(nul);
		close(fd);
		FD_ZERO(&r);
		FD_SET(fd, &r);
		tv = (struct timeval){0, 0};
		check_errno(select(fd + 1, &r, NULL, NULL, &tv), EBADF, "select on a closed fd is EBADF");
	}
	check_errno(select(-1, NULL, NULL, NULL, &tv), EINVAL, "select with nfds -1 is EINVAL");
	FD_ZERO(&r);
	FD_SET(p[0], &r);
	ts = (struct timespec){0, 30000000};
	t0 = now();
	check_eq(syscall(SYS_pselect6, p[0] + 1, &r, NULL, NULL, &ts, NULL), 0, "pselect6 with a 30 ms timeout returns 0");
	check(now() - t0 >= 0.025, "after ~30 ms");

	/* --- signal masks of ppoll / pselect6 --- */
	{
		struct sigaction sa;
		sigset_t block, none;
		struct kernel_sigset ks;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = handler;
		sigaction(SIGUSR1, &sa, NULL);
		sigemptyset(&block);
		sigaddset(&block, SIGUSR1);
		sigprocmask(SIG_BLOCK, &block, NULL);
		raise(SIGUSR1);
		sigemptyset(&none);
		hits = 0;
		pf[0] = (struct pollfd){p[0], POLLIN, 0};
		ts = (struct timespec){5, 0};
		check_errno(syscall(SYS_ppoll, pf, 1, &ts, &none, 8), EINTR,
			    "ppoll whose mask unblocks a pending signal is EINTR");
		check_eq(hits, 1, "and the handler ran");
		sigprocmask(SIG_BLOCK, NULL, &none);
		check(sigismember(&none, SIGUSR1), "the old mask is back after ppoll");
		write(p[1], "z", 1);
		check_eq(syscall(SYS_ppoll, pf, 1, &ts, &block, 8), 1, "ppoll with a mask, data ready: 1");
		read(p[0], &c, 1);
		raise(SIGUSR1);
		hits = 0;
		sigemptyset(&none);
		ks.set = (unsigned long)&none;
		ks.size = 8;
		FD_ZERO(&r);
		FD_SET(p[0], &r);
		check_errno(syscall(SYS_pselect6, p[0] + 1, &r, NULL, NULL, &ts, &ks), EINTR,
			    "pselect6 whose mask unblocks a pending signal is EINTR");
		check_eq(hits, 1, "and the handler ran");
		sigprocmask(SIG_UNBLOCK, &block, NULL);
		ts = (struct timespec){0, 1000000000L};
		check_errno(syscall(SYS_ppoll, pf, 1, &ts, NULL, 8), EINVAL, "ppoll with tv_nsec 1e9 is EINVAL");
		ts = (struct timespec){0, 0};
		check_errno(syscall(SYS_ppoll, pf, 1, &ts, &block, 16), EINVAL, "ppoll with sigsetsize 16 is EINVAL");
	}

	/* --- eventfd2 --- */
	efd = check_ok(syscall(SYS_eventfd2, 3, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd2(3, NONBLOCK|CLOEXEC)");
	check_eq(fcntl(efd, F_GETFD), FD_CLOEXEC, "FD_CLOEXEC");
	pf[0] = (struct pollfd){efd, POLLIN | POLLOUT, 0};
	poll(pf, 1, 0);
	check_eq(pf[0].revents, POLLIN | POLLOUT, "a non-zero counter is readable and writable");
	v = 4;
	check_eq(write(efd, &v, 8), 8, "write adds 4");
	v = 0;
	check_eq(read(efd, &v, 8), 8, "read 8 bytes");
	check_eq(v, 7, "read returns the sum 7");
	check_errno(read(efd, &v, 8), EAGAIN, "and resets it: the next read is EAGAIN");
	check_errno(read(efd, &v, 4), EINVAL, "a read of 4 bytes is EINVAL");
	check_errno(read(efd, &v, 0), EINVAL, "a read of 0 bytes is EINVAL too");
	v = 0xffffffffffffffffULL;
	check_errno(write(efd, &v, 8), EINVAL, "writing 0xffffffffffffffff is EINVAL");
	close(efd);
	efd = syscall(SYS_eventfd2, 2, EFD_SEMAPHORE | EFD_NONBLOCK);
	read(efd, &v, 8);
	check_eq(v, 1, "EFD_SEMAPHORE reads 1");
	read(efd, &v, 8);
	check_errno(read(efd, &v, 8), EAGAIN, "twice, then EAGAIN");
	close(efd);
	check_errno(syscall(SYS_eventfd2, 0, 0x2), EINVAL, "eventfd2 with flag 2 is EINVAL");
	return tap_done();
}
