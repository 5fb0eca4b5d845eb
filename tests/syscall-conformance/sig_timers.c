/*
 * sig_timers: alarm, setitimer/getitimer (ITIMER_REAL), and POSIX timers
 * (timer_create/settime/gettime/getoverrun/delete) with SIGEV_SIGNAL and
 * SIGEV_THREAD_ID.
 *
 * Every expiry is awaited with rt_sigtimedwait (the signal blocked, a 2 s
 * limit), so a missing timer fails a check instead of hanging.  Checked:
 * alarm returns the seconds left of the previous alarm and alarm(0)
 * cancels; an alarm delivers SIGALRM; setitimer reads back (rounded to the
 * clock's granularity, never more than set), an interval timer fires
 * repeatedly, getitimer counts down, setting it to zero disarms it;
 * timer_create ids, timer_settime relative and TIMER_ABSTIME, the
 * sigev_value arrives in si_value with si_code SI_TIMER, timer_gettime
 * counts down, timer_getoverrun, SIGEV_THREAD_ID targets the given
 * thread, timer_delete.  Errno paths: EINVAL (bad itimer `which`,
 * tv_usec >= 1e6, bad clock id, bad sigev_notify, tv_nsec >= 1e9, deleted
 * or never-created timer id, SIGEV_THREAD_ID with a tid of another
 * process), EFAULT.
 */
#include "tap.h"
#include <signal.h>
#include <sys/time.h>
#include <time.h>

static int wait_sig(int sig, siginfo_t *si)
{
	sigset_t s;
	struct timespec ts = {2, 0};
	sigemptyset(&s);
	sigaddset(&s, sig);
	return sigtimedwait(&s, si, &ts);
}

static long ms_of(const struct itimerval *v)
{
	return v->it_value.tv_sec * 1000 + v->it_value.tv_usec / 1000;
}

int main(void)
{
	sigset_t s;
	siginfo_t si;
	struct itimerval it, old;
	timer_t tid;
	struct sigevent sev;
	struct itimerspec its, cur;

	tap_plan(35);
	sigemptyset(&s);
	sigaddset(&s, SIGALRM);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, SIGRTMIN);
	sigprocmask(SIG_BLOCK, &s, NULL);

	/* --- alarm --- */
	check_eq(syscall(SYS_alarm, 100), 0, "alarm(100) with no previous alarm returns 0");
	check_eq(syscall(SYS_alarm, 50), 100, "alarm(50) returns the 100 s left of the previous one");
	check_eq(syscall(SYS_alarm, 0), 50, "alarm(0) cancels and returns 50");
	check_eq(syscall(SYS_alarm, 0), 0, "nothing left after the cancel");
	syscall(SYS_alarm, 1);
	memset(&si, 0, sizeof(si));
	check_eq(wait_sig(SIGALRM, &si), SIGALRM, "alarm(1) delivers SIGALRM");
	check_eq(si.si_code, SI_KERNEL, "an alarm's si_code is SI_KERNEL");

	/* --- setitimer / getitimer --- */
	memset(&it, 0, sizeof(it));
	it.it_value.tv_sec = 10;
	it.it_interval.tv_usec = 500000;
	check_eq(syscall(SYS_setitimer, ITIMER_REAL, &it, NULL), 0, "setitimer ITIMER_REAL 10 s, interval 0.5 s");
	memset(&old, 0, sizeof(old));
	check_eq(syscall(SYS_getitimer, ITIMER_REAL, &old), 0, "getitimer");
	check(ms_of(&old) > 9000 && ms_of(&old) <= 10000 && old.it_interval.tv_usec == 500000,
	      "getitimer reads back about 10 s left and the 0.5 s interval");
	memset(&it, 0, sizeof(it));
	it.it_value.tv_usec = 20000;
	it.it_interval.tv_usec = 20000;
	memset(&old, 0, sizeof(old));
	check_eq(syscall(SYS_setitimer, ITIMER_REAL, &it, &old), 0, "setitimer 20 ms periodic");
	check(ms_of(&old) > 9000, "setitimer's old value is the 10 s timer");
	check(wait_sig(SIGALRM, NULL) == SIGALRM && wait_sig(SIGALRM, NULL) == SIGALRM &&
	      wait_sig(SIGALRM, NULL) == SIGALRM, "a periodic itimer fires again and again");
	memset(&it, 0, sizeof(it));
	check_eq(syscall(SYS_setitimer, ITIMER_REAL, &it, NULL), 0, "setitimer zero disarms");
	syscall(SYS_getitimer, ITIMER_REAL, &old);
	check(old.it_value.tv_sec == 0 && old.it_value.tv_usec == 0, "getitimer reads zero after disarming");
	check_errno(syscall(SYS_setitimer, 5, &it, NULL), EINVAL, "setitimer with which=5 is EINVAL");
	it.it_value.tv_usec = 1000000;
	check_errno(syscall(SYS_setitimer, ITIMER_REAL, &it, NULL), EINVAL, "setitimer tv_usec 1000000 is EINVAL");
	check_errno(syscall(SYS_getitimer, ITIMER_REAL, BAD_PTR), EFAULT, "getitimer to a bad pointer is EFAULT");

	/* --- POSIX timers --- */
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN;
	sev.sigev_value.sival_int = 4321;
	check_eq(syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &tid), 0, "timer_create CLOCK_MONOTONIC SIGEV_SIGNAL");
	memset(&its, 0, sizeof(its));
	its.it_value.tv_nsec = 30000000;
	check_eq(syscall(SYS_timer_settime, tid, 0, &its, NULL), 0, "timer_settime 30 ms one-shot");
	memset(&si, 0, sizeof(si));
	check_eq(wait_sig(SIGRTMIN, &si), SIGRTMIN, "the timer delivers SIGRTMIN");
	check(si.si_code == SI_TIMER && si.si_value.sival_int == 4321, "si_code SI_TIMER and the sigev_value");
	its.it_value.tv_sec = 100;
	its.it_value.tv_nsec = 0;
	syscall(SYS_timer_settime, tid, 0, &its, NULL);
	memset(&cur, 0, sizeof(cur));
	check_eq(syscall(SYS_timer_gettime, tid, &cur), 0, "timer_gettime");
	check(cur.it_value.tv_sec >= 98 && cur.it_value.tv_sec <= 100, "about 100 s left");
	check_eq(syscall(SYS_timer_getoverrun, tid), 0, "timer_getoverrun is 0");
	{
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		its.it_value = now;
		its.it_value.tv_nsec += 20000000;
		if (its.it_value.tv_nsec >= 1000000000L) {
			its.it_value.tv_sec++;
			its.it_value.tv_nsec -= 1000000000L;
		}
		check_eq(syscall(SYS_timer_settime, tid, TIMER_ABSTIME, &its, NULL), 0, "timer_settime TIMER_ABSTIME now+20 ms");
		check_eq(wait_sig(SIGRTMIN, NULL), SIGRTMIN, "the absolute timer fires");
	}
	its.it_value.tv_nsec = 1000000000L;
	check_errno(syscall(SYS_timer_settime, tid, 0, &its, NULL), EINVAL, "timer_settime tv_nsec 1e9 is EINVAL");
	check_eq(syscall(SYS_timer_delete, tid), 0, "timer_delete");
	check_errno(syscall(SYS_timer_delete, tid), EINVAL, "timer_delete twice is EINVAL");
	check_errno(syscall(SYS_timer_gettime, 12345, &cur), EINVAL, "timer_gettime of a never-created id is EINVAL");
	check_errno(syscall(SYS_timer_create, 99, &sev, &tid), EINVAL, "timer_create with clock 99 is EINVAL");
	sev.sigev_notify = 77;
	check_errno(syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &tid), EINVAL, "timer_create with sigev_notify 77 is EINVAL");

	/* --- SIGEV_THREAD_ID --- */
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = SIGUSR1;
	sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	check_eq(syscall(SYS_timer_create, CLOCK_REALTIME, &sev, &tid), 0, "timer_create SIGEV_THREAD_ID to this thread");
	memset(&its, 0, sizeof(its));
	its.it_value.tv_nsec = 10000000;
	syscall(SYS_timer_settime, tid, 0, &its, NULL);
	check_eq(wait_sig(SIGUSR1, NULL), SIGUSR1, "SIGEV_THREAD_ID delivers SIGUSR1 to this thread");
	syscall(SYS_timer_delete, tid);
	sev._sigev_un._tid = 0x3ffffff0;
	check_errno(syscall(SYS_timer_create, CLOCK_REALTIME, &sev, &tid), EINVAL,
		    "SIGEV_THREAD_ID with a tid not in this process is EINVAL");
	return tap_done();
}
