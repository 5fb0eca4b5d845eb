/*
 * time: clock_gettime, clock_getres, gettimeofday, time, nanosleep,
 * clock_nanosleep, getrandom, sched_getaffinity, sched_yield, sysinfo (raw
 * syscalls, so the vDSO never answers instead of the kernel).
 *
 * Success paths: every standard clock reads; REALTIME is a plausible date
 * and agrees with gettimeofday and time; MONOTONIC never goes backwards;
 * the high-resolution clocks report 1 ns resolution; sleeps last at least
 * as long as asked (relative and TIMER_ABSTIME; an absolute time in the
 * past returns at once); getrandom fills the buffer with fresh bytes for
 * every valid flag; the affinity mask has a CPU and the kernel's mask size;
 * sysinfo's numbers are consistent.  Errno paths: EINVAL (unknown clock,
 * tv_nsec out of range, negative tv_sec, bad getrandom flags, an affinity
 * size that is not a multiple of 8), EOPNOTSUPP (clock_nanosleep on the
 * thread CPU clock), EFAULT (bad pointers everywhere), ESRCH (no such pid).
 * Elapsed times have lower bounds only, except that a sleep until a time
 * long past must not last half a second.
 */
#include "tap.h"
#include <sched.h>
#include <sys/random.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <time.h>

#define NS 1000000000L

static long sys_clock_gettime(clockid_t c, struct timespec *ts) { return syscall(SYS_clock_gettime, c, ts); }
static long sys_clock_getres(clockid_t c, struct timespec *ts) { return syscall(SYS_clock_getres, c, ts); }
static long sys_nanosleep(const struct timespec *req, struct timespec *rem)
{
	return syscall(SYS_nanosleep, req, rem);
}
static long sys_clock_nanosleep(clockid_t c, int fl, const struct timespec *req, struct timespec *rem)
{
	return syscall(SYS_clock_nanosleep, c, fl, req, rem);
}
static long sys_getrandom(void *buf, size_t n, unsigned fl) { return syscall(SYS_getrandom, buf, n, fl); }

static long mono_ns(void)
{
	struct timespec ts;

	sys_clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NS + ts.tv_nsec;
}

int main(void)
{
	static const struct { clockid_t id; const char *name; } clocks[] = {
		{ CLOCK_REALTIME, "CLOCK_REALTIME" },
		{ CLOCK_MONOTONIC, "CLOCK_MONOTONIC" },
		{ CLOCK_PROCESS_CPUTIME_ID, "CLOCK_PROCESS_CPUTIME_ID" },
		{ CLOCK_THREAD_CPUTIME_ID, "CLOCK_THREAD_CPUTIME_ID" },
		{ CLOCK_MONOTONIC_RAW, "CLOCK_MONOTONIC_RAW" },
		{ CLOCK_REALTIME_COARSE, "CLOCK_REALTIME_COARSE" },
		{ CLOCK_MONOTONIC_COARSE, "CLOCK_MONOTONIC_COARSE" },
		{ CLOCK_BOOTTIME, "CLOCK_BOOTTIME" },
	};
	struct timespec ts, ts2, req;
	struct timeval tv;
	struct sysinfo si;
	unsigned char r1[32], r2[32];
	unsigned long mask[16];
	cpu_set_t *set = (cpu_set_t *)mask;
	long t, t2, start;
	unsigned i;

	tap_plan(77);

	/* clock_gettime */
	for (i = 0; i < sizeof(clocks) / sizeof(clocks[0]); i++) {
		ts.tv_nsec = -1;
		check_ok(sys_clock_gettime(clocks[i].id, &ts), "clock_gettime %s", clocks[i].name);
		check(ts.tv_sec >= 0 && ts.tv_nsec >= 0 && ts.tv_nsec < NS, "%s is a normalized timespec", clocks[i].name);
	}
	sys_clock_gettime(CLOCK_REALTIME, &ts);
	check(ts.tv_sec > 1600000000L, "CLOCK_REALTIME is after 2020");
	sys_clock_gettime(CLOCK_MONOTONIC, &ts);
	sys_clock_gettime(CLOCK_MONOTONIC, &ts2);
	check(ts2.tv_sec * NS + ts2.tv_nsec >= ts.tv_sec * NS + ts.tv_nsec, "CLOCK_MONOTONIC does not go backwards");
	sys_clock_gettime(CLOCK_BOOTTIME, &ts2);
	check(ts2.tv_sec * NS + ts2.tv_nsec >= ts.tv_sec * NS + ts.tv_nsec, "CLOCK_BOOTTIME is not behind CLOCK_MONOTONIC");
	check_errno(sys_clock_gettime(100, &ts), EINVAL, "clock_gettime of clock 100 is EINVAL");
	check_errno(sys_clock_gettime(CLOCK_REALTIME, BAD_PTR), EFAULT, "clock_gettime into a bad pointer is EFAULT");
	check_errno(sys_clock_gettime(CLOCK_MONOTONIC, BAD_PTR), EFAULT, "clock_gettime MONOTONIC into a bad pointer is EFAULT");

	/* clock_getres */
	check_ok(sys_clock_getres(CLOCK_REALTIME, &ts), "clock_getres CLOCK_REALTIME");
	check(ts.tv_sec == 0 && ts.tv_nsec == 1, "CLOCK_REALTIME has 1 ns resolution");
	check_ok(sys_clock_getres(CLOCK_MONOTONIC, &ts), "clock_getres CLOCK_MONOTONIC");
	check(ts.tv_sec == 0 && ts.tv_nsec == 1, "CLOCK_MONOTONIC has 1 ns resolution");
	check_ok(sys_clock_getres(CLOCK_MONOTONIC_COARSE, &ts), "clock_getres CLOCK_MONOTONIC_COARSE");
	check(ts.tv_sec == 0 && ts.tv_nsec > 1 && ts.tv_nsec <= 10000000, "a coarse clock ticks in (1 ns, 10 ms]");
	check_eq(sys_clock_getres(CLOCK_REALTIME, NULL), 0, "clock_getres with a NULL result is fine");
	check_errno(sys_clock_getres(100, &ts), EINVAL, "clock_getres of clock 100 is EINVAL");
	check_errno(sys_clock_getres(CLOCK_REALTIME, BAD_PTR), EFAULT, "clock_getres into a bad pointer is EFAULT");

	/* gettimeofday, time */
	sys_clock_gettime(CLOCK_REALTIME, &ts);
	check_ok(syscall(SYS_gettimeofday, &tv, NULL), "gettimeofday");
	check(tv.tv_usec >= 0 && tv.tv_usec < 1000000, "tv_usec is below one million");
	check(tv.tv_sec >= ts.tv_sec && tv.tv_sec - ts.tv_sec <= 5, "gettimeofday agrees with CLOCK_REALTIME");
	check_ok(syscall(SYS_gettimeofday, NULL, NULL), "gettimeofday(NULL, NULL)");
	check_errno(syscall(SYS_gettimeofday, BAD_PTR, NULL), EFAULT, "gettimeofday into a bad pointer is EFAULT");
	t = syscall(SYS_time, NULL);
	/* time(2) is ktime_get_real_seconds(): the seconds of the last tick, so taken just after a
	   second boundary it can still be one behind a fine-grained CLOCK_REALTIME read before it. */
	check(t >= ts.tv_sec - 1 && t - ts.tv_sec <= 5, "time(NULL) agrees with CLOCK_REALTIME");
	t2 = 0;
	t = syscall(SYS_time, &t2);
	check(t == t2 && t > 0, "time(&t) stores what it returns");
	check_errno(syscall(SYS_time, BAD_PTR), EFAULT, "time into a bad pointer is EFAULT");

	/* nanosleep */
	start = mono_ns();
	req = (struct timespec){ 0, 20000000 };
	check_eq(sys_nanosleep(&req, NULL), 0, "nanosleep 20 ms");
	check(mono_ns() - start >= 20000000, "nanosleep slept at least 20 ms");
	req = (struct timespec){ 0, 0 };
	check_eq(sys_nanosleep(&req, &ts), 0, "nanosleep 0");
	req = (struct timespec){ 0, NS };
	check_errno(sys_nanosleep(&req, NULL), EINVAL, "nanosleep with tv_nsec = 1e9 is EINVAL");
	req = (struct timespec){ 0, -1 };
	check_errno(sys_nanosleep(&req, NULL), EINVAL, "nanosleep with tv_nsec = -1 is EINVAL");
	req = (struct timespec){ -1, 0 };
	check_errno(sys_nanosleep(&req, NULL), EINVAL, "nanosleep with tv_sec = -1 is EINVAL");
	check_errno(sys_nanosleep(BAD_PTR, NULL), EFAULT, "nanosleep with a bad pointer is EFAULT");

	/* clock_nanosleep */
	start = mono_ns();
	req = (struct timespec){ 0, 10000000 };
	check_eq(sys_clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL), 0, "clock_nanosleep MONOTONIC 10 ms");
	check(mono_ns() - start >= 10000000, "clock_nanosleep slept at least 10 ms");
	start = mono_ns() + 20000000;
	req = (struct timespec){ start / NS, start % NS };
	check_eq(sys_clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &req, NULL), 0,
		 "clock_nanosleep TIMER_ABSTIME 20 ms ahead");
	check(mono_ns() >= start, "TIMER_ABSTIME slept until the deadline");
	req = (struct timespec){ 1, 0 };
	start = mono_ns();
	check_eq(sys_clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &req, NULL), 0,
		 "clock_nanosleep TIMER_ABSTIME in the past");
	/* (Unless the clock itself is younger than 2 s, when 1 s may still be ahead.) */
	check(start < 2 * NS || mono_ns() - start < NS / 2, "an absolute time in the past returns at once");
	req = (struct timespec){ 0, 1000000 };
	check_eq(sys_clock_nanosleep(CLOCK_REALTIME, 0, &req, NULL), 0, "clock_nanosleep REALTIME 1 ms");
	check_errno(sys_clock_nanosleep(100, 0, &req, NULL), EINVAL, "clock_nanosleep clock 100 is EINVAL");
	check_errno(sys_clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &req, NULL), EOPNOTSUPP,
		    "clock_nanosleep on the thread CPU clock is EOPNOTSUPP");
	req = (struct timespec){ 0, NS };
	check_errno(sys_clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL), EINVAL,
		    "clock_nanosleep with tv_nsec = 1e9 is EINVAL");
	check_errno(sys_clock_nanosleep(CLOCK_MONOTONIC, 0, BAD_PTR, NULL), EFAULT,
		    "clock_nanosleep with a bad pointer is EFAULT");

	/* getrandom */
	memset(r1, 0, sizeof(r1));
	memset(r2, 0, sizeof(r2));
	check_eq(sys_getrandom(r1, sizeof(r1), 0), 32, "getrandom 32 bytes");
	check_eq(sys_getrandom(r2, sizeof(r2), 0), 32, "getrandom 32 more bytes");
	check(memcmp(r1, r2, 32) != 0, "two getrandom results differ");
	check_eq(sys_getrandom(r1, sizeof(r1), GRND_NONBLOCK), 32, "getrandom GRND_NONBLOCK");
	check_eq(sys_getrandom(r1, sizeof(r1), GRND_RANDOM), 32, "getrandom GRND_RANDOM");
	check_eq(sys_getrandom(r1, sizeof(r1), GRND_INSECURE), 32, "getrandom GRND_INSECURE");
	check_eq(sys_getrandom(r1, 0, 0), 0, "getrandom of 0 bytes returns 0");
	check_errno(sys_getrandom(r1, sizeof(r1), 0x100), EINVAL, "getrandom with unknown flags is EINVAL");
	check_errno(sys_getrandom(r1, sizeof(r1), GRND_INSECURE | GRND_RANDOM), EINVAL,
		    "getrandom GRND_INSECURE|GRND_RANDOM is EINVAL");
	check_errno(sys_getrandom(BAD_PTR, 32, 0), EFAULT, "getrandom into a bad pointer is EFAULT");

	/* sched_getaffinity, sched_yield */
	memset(mask, 0, sizeof(mask));
	t = syscall(SYS_sched_getaffinity, 0, sizeof(mask), mask);
	check(t > 0 && t % 8 == 0 && t <= (long)sizeof(mask), "sched_getaffinity returns the kernel mask size");
	check(CPU_COUNT_S(sizeof(mask), set) >= 1, "the affinity mask has at least one CPU");
	check_eq(syscall(SYS_sched_getaffinity, syscall(SYS_getpid), sizeof(mask), mask), t,
		 "sched_getaffinity of our own pid");
	check_errno(syscall(SYS_sched_getaffinity, 0, 4, mask), EINVAL, "an affinity size of 4 is EINVAL");
	check_errno(syscall(SYS_sched_getaffinity, 0, sizeof(mask), BAD_PTR), EFAULT,
		    "sched_getaffinity into a bad pointer is EFAULT");
	check_errno(syscall(SYS_sched_getaffinity, 0x7fffffff, sizeof(mask), mask), ESRCH,
		    "sched_getaffinity of a missing pid is ESRCH");
	check_eq(syscall(SYS_sched_yield), 0, "sched_yield");

	/* sysinfo */
	memset(&si, 0, sizeof(si));
	check_ok(syscall(SYS_sysinfo, &si), "sysinfo");
	check(si.uptime >= 0 && si.totalram > 0 && si.freeram <= si.totalram && si.mem_unit >= 1 && si.procs >= 1,
	      "sysinfo's numbers are consistent");
	check_errno(syscall(SYS_sysinfo, BAD_PTR), EFAULT, "sysinfo into a bad pointer is EFAULT");

	return tap_done();
}
