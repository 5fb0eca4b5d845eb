/*
 * poll_epoll: epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait
 * epoll_pwait2, eventfd eventfd2, getcpu -- implemented syscalls that no
 * other program exercised.
 *
 * epoll: ADD/MOD/DEL and their errnos (EEXIST, ENOENT, EBADF, EINVAL for an
 * epoll fd added to itself, EPERM for a regular file), level-triggered
 * readiness, EPOLLONESHOT, maxevents 0 EINVAL, epoll_pwait2 with a zero and a
 * NULL timeout and a bad timespec.  eventfd: counter and EFD_SEMAPHORE reads,
 * EFD_NONBLOCK EAGAIN, short reads and writes EINVAL, 0xffffffffffffffff
 * EINVAL.
 */
#include "tap.h"
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>

static long pwait2(int ep, struct epoll_event *ev, int n, struct timespec *ts)
{
	return syscall(SYS_epoll_pwait2, ep, ev, n, ts, NULL, 8);
}

int main(void)
{
	struct epoll_event ev = {0}, out[4];
	struct timespec zero = {0, 0}, bad = {0, 1000000000};
	uint64_t v;
	unsigned cpu = 99, node = 99;
	int ep, efd, sfd, f;

	tap_plan(30);
	check_errno(epoll_create(0), EINVAL, "epoll_create(0): EINVAL");
	check_errno(epoll_create1(1), EINVAL, "epoll_create1 unknown flag: EINVAL");
	ep = check_ok(epoll_create1(EPOLL_CLOEXEC), "epoll_create1(EPOLL_CLOEXEC)");
	efd = check_ok(eventfd(0, EFD_NONBLOCK), "eventfd");
	ev.events = EPOLLIN;
	ev.data.u64 = 42;
	check_ok(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev), "EPOLL_CTL_ADD");
	check_errno(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev), EEXIST, "ADD twice: EEXIST");
	check_errno(epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev), EINVAL, "ADD itself: EINVAL");
	check_errno(epoll_ctl(ep, EPOLL_CTL_ADD, 999, &ev), EBADF, "ADD a bad fd: EBADF");
	f = open("/fixtures/file.txt", O_RDONLY);
	check_errno(epoll_ctl(ep, EPOLL_CTL_ADD, f, &ev), EPERM, "ADD a regular file: EPERM");
	check_errno(epoll_ctl(ep, EPOLL_CTL_MOD, 1000, &ev), EBADF, "MOD a bad fd: EBADF");
	sfd = eventfd(0, 0);
	check_errno(epoll_ctl(ep, EPOLL_CTL_DEL, sfd, NULL), ENOENT, "DEL an unwatched fd: ENOENT");
	check_errno(epoll_ctl(f, EPOLL_CTL_ADD, efd, &ev), EINVAL, "epoll_ctl on a non-epoll fd: EINVAL");
	check_eq(epoll_wait(ep, out, 4, 0), 0, "nothing ready");
	check_errno(epoll_wait(ep, out, 0, 0), EINVAL, "maxevents 0: EINVAL");
	v = 3;
	check_eq(write(efd, &v, 8), 8, "eventfd write 3");
	check_eq(epoll_wait(ep, out, 4, 0), 1, "the eventfd is ready");
	check_eq((long)out[0].data.u64, 42, "with its data");
	check_eq(epoll_wait(ep, out, 4, 0), 1, "level-triggered: still ready");
	check_eq(pwait2(ep, out, 4, &zero), 1, "epoll_pwait2 zero timeout");
	check_eq(pwait2(ep, out, 4, NULL), 1, "epoll_pwait2 NULL timeout (ready, no wait)");
	check_errno(pwait2(ep, out, 4, &bad), EINVAL, "epoll_pwait2 bad timespec: EINVAL");
	ev.events = EPOLLIN | EPOLLONESHOT;
	check_ok(epoll_ctl(ep, EPOLL_CTL_MOD, efd, &ev), "MOD to EPOLLONESHOT");
	check_eq(epoll_pwait(ep, out, 4, 0, NULL), 1, "reported once");
	check_eq(epoll_pwait(ep, out, 4, 0, NULL), 0, "then disabled");
	check_eq(read(efd, &v, 8), 8, "eventfd read");
	check_eq((long)v, 3, "the whole counter");
	check_errno(read(efd, &v, 8), EAGAIN, "empty EFD_NONBLOCK: EAGAIN");
	v = 0xffffffffffffffffULL;
	check_errno(write(efd, &v, 8), EINVAL, "write of 2^64-1: EINVAL");
	check_errno(read(efd, &v, 4), EINVAL, "a 4-byte read: EINVAL");
	check_ok(syscall(SYS_getcpu, &cpu, &node, NULL), "getcpu");
	tap_printf("# cpu %u node %u\n", cpu, node);
	return tap_done();
}
