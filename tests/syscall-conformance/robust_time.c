/*
 * robust_time: time arguments at their limits, as Linux checks and clamps them.
 *
 * Linux refuses a timespec with tv_nsec outside [0, 1e9) or a negative tv_sec (EINVAL,
 * timespec64_valid), a timeval with tv_usec outside [0, 1e6) (timeval_valid), and clamps a
 * valid but huge time to KTIME_MAX (2^63-1 ns, about 292 years): nanosleep({2^63-1, 0}) just
 * sleeps (issue 11: it used to kill the sandbox), and the time left it reports on EINTR is
 * below KTIME_MAX.  select() normalises its timeval (tv_usec may exceed a second).
 * Long sleeps are cut short by a 50 ms ITIMER_REAL whose SIGALRM handler does nothing.
 */
#include "tap.h"

#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>
#include <utime.h>
#include <fcntl.h>
#include <sys/stat.h>

#define TMAX 0x7fffffffffffffffLL
#define KTIME_SEC_MAX 9223372036LL       /* KTIME_MAX / NSEC_PER_SEC */

static volatile int alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

/* SIGALRM in 50 ms (a handler without SA_RESTART: the sleep ends with EINTR). */
static void alarm_soon(void)
{
	struct itimerval v = {{0, 0}, {0, 50000}};

	setitimer(ITIMER_REAL, &v, NULL);
}

static long sys_nanosleep(long sec, long nsec, struct timespec *rem)
{
	struct timespec ts = {sec, nsec};

	return syscall(SYS_nanosleep, &ts, rem);
}

int main(void)
{
	struct sigaction sa;
	struct timespec ts, rem;
	struct itimerval iv, old;
	struct itimerspec its, cur;
	struct timeval tv;
	uint32_t word = 0;
	int p[2];
	static char buf[16];

	tap_plan(38);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);

	/* nanosleep */
	check_errno(sys_nanosleep(0, 1000000000, NULL), EINVAL, "nanosleep tv_nsec = 1e9: EINVAL");
	check_errno(sys_nanosleep(0, -1, NULL), EINVAL, "nanosleep tv_nsec = -1: EINVAL");
	check_errno(sys_nanosleep(-1, 0, NULL), EINVAL, "nanosleep tv_sec = -1: EINVAL");
	check_errno(sys_nanosleep(TMAX, 1000000000, NULL), EINVAL, "nanosleep {2^63-1, 1e9}: EINVAL");
	check_errno(syscall(SYS_nanosleep, BAD_PTR, NULL), EFAULT, "nanosleep of an unmapped timespec: EFAULT");
	check_eq(sys_nanosleep(0, 0, NULL), 0, "nanosleep {0, 0} returns at once");
	alarm_soon();
	rem.tv_sec = rem.tv_nsec = -1;
	check_errno(sys_nanosleep(TMAX, 0, &rem), EINTR, "nanosleep {2^63-1, 0} sleeps until a signal: EINTR");
	check(rem.tv_sec > KTIME_SEC_MAX - 100000000LL && rem.tv_sec <= KTIME_SEC_MAX && rem.tv_nsec >= 0
	      && rem.tv_nsec < 1000000000, "the time left is clamped below KTIME_MAX (%lld s)", (long long)rem.tv_sec);
	alarm_soon();
	check_errno(sys_nanosleep(TMAX, 999999999, NULL), EINTR, "nanosleep {2^63-1, 999999999} sleeps too");

	/* clock_nanosleep (raw: the syscall returns -1/errno through syscall()) */
	ts.tv_sec = 0;
	ts.tv_nsec = 1000000000;
	check_errno(syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, NULL), EINVAL,
		    "clock_nanosleep tv_nsec = 1e9: EINVAL");
	ts.tv_sec = -5;
	ts.tv_nsec = 0;
	check_errno(syscall(SYS_clock_nanosleep, CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL), EINVAL,
		    "clock_nanosleep TIMER_ABSTIME at a negative time: EINVAL");
	ts.tv_sec = 1;
	check_eq(syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL), 0,
		 "clock_nanosleep TIMER_ABSTIME in the past returns at once");
	ts.tv_sec = TMAX;
	alarm_soon();
	check_errno(syscall(SYS_clock_nanosleep, CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL), EINTR,
		    "clock_nanosleep TIMER_ABSTIME at 2^63-1 s sleeps until a signal");
	alarm_soon();
	check_errno(syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, &rem), EINTR,
		    "clock_nanosleep relative 2^63-1 s sleeps until a signal");
	check(rem.tv_sec <= KTIME_SEC_MAX, "its time left is clamped (%lld s)", (long long)rem.tv_sec);

	/* futex */
	ts.tv_sec = 0;
	ts.tv_nsec = -1;
	check_errno(syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0), EINVAL,
		    "futex wait with tv_nsec = -1: EINVAL");
	ts.tv_sec = TMAX;
	ts.tv_nsec = 0;
	alarm_soon();
	check_errno(syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0), EINTR,
		    "futex wait with a 2^63-1 s timeout waits until a signal");

	/* ppoll, pselect6, select */
	ts.tv_sec = 0;
	ts.tv_nsec = 1000000000;
	check_errno(syscall(SYS_ppoll, NULL, 0, &ts, NULL, 8), EINVAL, "ppoll tv_nsec = 1e9: EINVAL");
	check_errno(syscall(SYS_pselect6, 0, NULL, NULL, NULL, &ts, NULL), EINVAL, "pselect6 tv_nsec = 1e9: EINVAL");
	ts.tv_sec = TMAX;
	ts.tv_nsec = 0;
	alarm_soon();
	check_errno(syscall(SYS_ppoll, NULL, 0, &ts, NULL, 8), EINTR, "ppoll with a 2^63-1 s timeout waits until a signal");
	tv.tv_sec = 0;
	tv.tv_usec = -1;
	check_errno(syscall(SYS_select, 0, NULL, NULL, NULL, &tv), EINVAL, "select tv_usec = -1: EINVAL");
	tv.tv_sec = -2;
	tv.tv_usec = 2000000;
	check_eq(syscall(SYS_select, 0, NULL, NULL, NULL, &tv), 0,
		 "select {-2 s, 2000000 us} is normalised to 0 and returns at once");

	/* rt_sigtimedwait */
	{
		sigset_t set;

		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		ts.tv_sec = 0;
		ts.tv_nsec = 1000000000;
		check_errno(syscall(SYS_rt_sigtimedwait, &set, NULL, &ts, 8), EINVAL, "rt_sigtimedwait tv_nsec = 1e9: EINVAL");
	}

	/* setitimer / getitimer */
	memset(&iv, 0, sizeof(iv));
	iv.it_value.tv_usec = 1000000;
	check_errno(setitimer(ITIMER_REAL, &iv, NULL), EINVAL, "setitimer tv_usec = 1e6: EINVAL");
	iv.it_value.tv_usec = 0;
	iv.it_value.tv_sec = TMAX;
	check_ok(setitimer(ITIMER_REAL, &iv, NULL), "setitimer of 2^63-1 s is accepted");
	getitimer(ITIMER_REAL, &old);
	check(old.it_value.tv_sec > KTIME_SEC_MAX - 100000000LL && old.it_value.tv_sec <= KTIME_SEC_MAX,
	      "getitimer reports it clamped to KTIME_MAX (%lld s)", (long long)old.it_value.tv_sec);
	check_ok(syscall(SYS_setitimer, ITIMER_REAL, NULL, &old), "setitimer with a NULL new value");
	getitimer(ITIMER_REAL, &old);
	check(old.it_value.tv_sec == 0 && old.it_value.tv_usec == 0, "a NULL new value disarms the timer");

	/* POSIX timers */
	{
		timer_t id;
		struct sigevent se;

		memset(&se, 0, sizeof(se));
		se.sigev_notify = SIGEV_NONE;
		timer_create(CLOCK_MONOTONIC, &se, &id);
		memset(&its, 0, sizeof(its));
		its.it_value.tv_nsec = 1000000000;
		check_errno(timer_settime(id, 0, &its, NULL), EINVAL, "timer_settime tv_nsec = 1e9: EINVAL");
		its.it_value.tv_nsec = 0;
		its.it_value.tv_sec = TMAX;
		its.it_interval.tv_sec = TMAX;
		check_ok(timer_settime(id, 0, &its, NULL), "timer_settime of 2^63-1 s (and interval) is accepted");
		timer_gettime(id, &cur);
		check(cur.it_value.tv_sec <= KTIME_SEC_MAX && cur.it_value.tv_sec > KTIME_SEC_MAX - 100000000LL
		      && cur.it_interval.tv_sec == KTIME_SEC_MAX,
		      "timer_gettime reports both clamped to KTIME_MAX (%lld, %lld)",
		      (long long)cur.it_value.tv_sec, (long long)cur.it_interval.tv_sec);
		timer_delete(id);
	}

	/* file timestamps at the limits: clamped to what the filesystem holds, never an error */
	{
		struct utimbuf u = {TMAX, -TMAX};
		struct timespec tt[2] = {{TMAX, 999999999}, {-TMAX - 1, 0}}, keep[2];
		struct stat sb, tmp_st;
		int fd;

		stat("/tmp", &tmp_st);
		fd = open("/tmp/robust_time.f", O_CREAT | O_RDWR | O_TRUNC, 0644);
		check_ok(utime("/tmp/robust_time.f", &u), "utime of {2^63-1, -(2^63-1)} seconds succeeds");
		check(stat("/tmp/robust_time.f", &sb) == 0 && sb.st_atime > (1LL << 33) && sb.st_mtime < 0,
		      "the times are clamped to the filesystem's range (%lld, %lld)", (long long)sb.st_atime,
		      (long long)sb.st_mtime);
		check_ok(futimens(fd, tt), "utimensat of {2^63-1 s, 999999999 ns} and {-2^63 s, 0} succeeds");
		close(fd);
		unlink("/tmp/robust_time.f");
		keep[0] = tmp_st.st_atim;
		keep[1] = tmp_st.st_mtim;
		utimensat(AT_FDCWD, "/tmp", keep, 0);
	}

	/* read/write counts beyond MAX_RW_COUNT */
	if (pipe(p) != 0)
		return 1;
	check_eq(write(p[1], "hello", 5), 5, "write 5 bytes to a pipe");
	check_errno(syscall(SYS_read, p[0], buf, -1L), EFAULT, "read with a count of 2^64-1: EFAULT (access_ok)");
	{
		/* 4 GiB + 4 KiB of address space (never touched): a count past MAX_RW_COUNT. */
		char *big = mmap(NULL, (1UL << 32) + 4096, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		check_eq(syscall(SYS_read, p[0], big, (1UL << 32) + 4096), 5,
			 "read with a count of 2^32 + 4096 (clamped to MAX_RW_COUNT) returns what is there");
		munmap(big, (1UL << 32) + 4096);
	}
	check_errno(syscall(SYS_read, p[0], buf, 1UL << 63), EFAULT, "read with a count of 2^63: EFAULT (access_ok)");
	return tap_done();
}
