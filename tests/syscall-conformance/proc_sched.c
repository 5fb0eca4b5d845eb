/*
 * proc_sched: getrusage times getpriority setpriority sched_getparam
 * sched_getscheduler sched_get_priority_max/min.
 *
 * Success paths: getrusage RUSAGE_SELF / RUSAGE_CHILDREN / RUSAGE_THREAD
 * succeed, user+system time grows with a busy loop, a reaped child's time
 * shows in RUSAGE_CHILDREN and its ru_maxrss is non-zero; times() returns
 * a clock tick count and fills struct tms; the raw getpriority returns
 * 20 - nice (20 at nice 0), setpriority to a higher nice value works and
 * reads back; sched_getscheduler is SCHED_OTHER,
 * sched_getparam's priority is 0, SCHED_OTHER's priority range is 0..0
 * and SCHED_FIFO's 1..99.  Errno paths: EINVAL (getrusage who=5,
 * getpriority which=7, sched_get_priority_max(77), sched_getparam with a
 * negative pid), ESRCH (getpriority/sched_getscheduler of a missing pid),
 * EFAULT (getrusage, times, sched_getparam to a bad pointer).
 */
#include "tap.h"
#include <sched.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>

#define MISSING 0x3ffffff0

static double cpu_of(const struct rusage *ru)
{
	return ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 + ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6;
}

static void burn(double seconds)
{
	struct timespec a, b;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
	do {
		for (volatile int i = 0; i < 100000; i++)
			;
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
	} while ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9 < seconds);
}

int main(void)
{
	struct rusage ru, ru2;
	struct tms tm;
	struct sched_param sp;
	long r;

	tap_plan(27);

	/* --- getrusage --- */
	check_eq(syscall(SYS_getrusage, RUSAGE_SELF, &ru), 0, "getrusage RUSAGE_SELF");
	burn(0.1);
	syscall(SYS_getrusage, RUSAGE_SELF, &ru2);
	check(cpu_of(&ru2) - cpu_of(&ru) >= 0.05, "CPU time grows with 0.1 s of busy loop");
	check_eq(syscall(SYS_getrusage, RUSAGE_THREAD, &ru), 0, "getrusage RUSAGE_THREAD");
	check_eq(syscall(SYS_getrusage, RUSAGE_CHILDREN, &ru), 0, "getrusage RUSAGE_CHILDREN");
	check(cpu_of(&ru) == 0, "no child time before any child was reaped");
	{
		pid_t pid = fork();
		if (pid == 0) {
			burn(0.1);
			_exit(0);
		}
		waitpid(pid, NULL, 0);
	}
	syscall(SYS_getrusage, RUSAGE_CHILDREN, &ru);
	check(cpu_of(&ru) >= 0.05, "a reaped child's CPU time shows in RUSAGE_CHILDREN");
	check(ru.ru_maxrss > 0, "and its ru_maxrss is non-zero");
	check_errno(syscall(SYS_getrusage, 5, &ru), EINVAL, "getrusage who=5 is EINVAL");
	check_errno(syscall(SYS_getrusage, RUSAGE_SELF, BAD_PTR), EFAULT, "getrusage to a bad pointer is EFAULT");

	/* --- times --- */
	memset(&tm, 0xff, sizeof(tm));
	r = syscall(SYS_times, &tm);
	check(r != -1, "times returns a clock tick count");
	/* tick accounting is coarse: ask for half of what was burnt */
	check(tm.tms_utime + tm.tms_stime >= 5 && tm.tms_cutime + tm.tms_cstime >= 3,
	      "tms: ours >= 0.05 s and the child's >= 0.03 s (in 100 Hz ticks)");
	tap_note("tms: utime %ld stime %ld cutime %ld cstime %ld", (long)tm.tms_utime, (long)tm.tms_stime,
		 (long)tm.tms_cutime, (long)tm.tms_cstime);
	check(syscall(SYS_times, NULL) != -1, "times(NULL) is allowed");
	check_errno(syscall(SYS_times, BAD_PTR), EFAULT, "times to a bad pointer is EFAULT");

	/* --- priorities --- */
	check_eq(syscall(SYS_getpriority, PRIO_PROCESS, 0), 20, "raw getpriority at nice 0 is 20 (20 - nice)");
	check_eq(setpriority(PRIO_PROCESS, 0, 5), 0, "setpriority nice 5");
	check_eq(syscall(SYS_getpriority, PRIO_PROCESS, 0), 15, "raw getpriority reads 15");
	check_eq(getpriority(PRIO_PROCESS, 0), 5, "libc getpriority reads nice 5");
	/* PRIO_PGRP answers for the whole group, whose other members differ per run */
	tap_note("raw getpriority(PRIO_PGRP, 0) = %ld", syscall(SYS_getpriority, PRIO_PGRP, 0));
	check_errno(syscall(SYS_getpriority, 7, 0), EINVAL, "getpriority which=7 is EINVAL");
	check_errno(syscall(SYS_getpriority, PRIO_PROCESS, MISSING), ESRCH, "getpriority of a missing pid is ESRCH");

	/* --- scheduler --- */
	check_eq(syscall(SYS_sched_getscheduler, 0), SCHED_OTHER, "sched_getscheduler is SCHED_OTHER");
	sp.sched_priority = 42;
	check_eq(syscall(SYS_sched_getparam, 0, &sp), 0, "sched_getparam");
	check_eq(sp.sched_priority, 0, "priority 0");
	check(syscall(SYS_sched_get_priority_min, SCHED_OTHER) == 0 && syscall(SYS_sched_get_priority_max, SCHED_OTHER) == 0,
	      "SCHED_OTHER priorities are 0..0");
	check(syscall(SYS_sched_get_priority_min, SCHED_FIFO) == 1 && syscall(SYS_sched_get_priority_max, SCHED_FIFO) == 99,
	      "SCHED_FIFO priorities are 1..99");
	check_errno(syscall(SYS_sched_get_priority_max, 77), EINVAL, "sched_get_priority_max(77) is EINVAL");
	check_errno(syscall(SYS_sched_getscheduler, MISSING), ESRCH, "sched_getscheduler of a missing pid is ESRCH");
	check_errno(syscall(SYS_sched_getparam, -1, &sp), EINVAL, "sched_getparam with pid -1 is EINVAL");
	return tap_done();
}
