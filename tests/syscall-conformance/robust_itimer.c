/*
 * robust_itimer: timers that expire far faster than anyone takes their signal.
 *
 * Linux queues a timer's signal once per expiry and re-arms an interval timer only when that
 * signal is dequeued, counting the periods missed as the overrun; a signal ignored at expiry is
 * not queued at all (ITIMER_REAL then stops, a POSIX timer waits until the signal is unignored).
 * So a 1 us ITIMER_REAL with SIGALRM ignored costs nothing, and another process's sleep ends on
 * time (issue 11: it froze the sandbox).  Checked: that sleep (a child, waited for by the parent
 * while the timer runs), the same with a handler counting SIGALRMs, getitimer after an ignored
 * expiry, the overrun of a blocked POSIX timer (one signal, many periods), a parked POSIX timer
 * queued when its signal is unignored, and SIG_IGN discarding a pending signal.
 */
#include "tap.h"

#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

static volatile long alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static void set_real(long interval_us, long value_us)
{
	struct itimerval v = {{0, interval_us}, {0, value_us}};

	setitimer(ITIMER_REAL, &v, NULL);
}

/* A child that sleeps 200 ms and exits 0, then an ITIMER_REAL of `us` microseconds in the
 * parent, which waits for the child; returns the child's wait status. */
static int child_sleep_status(long us)
{
	int st = -1;
	pid_t pid = fork();

	if (pid == 0) {
		struct timespec ts = {0, 200000000};

		_exit(nanosleep(&ts, NULL) == 0 ? 0 : 1);
	}
	set_real(us, us);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return st;
}

/* After execve: POSIX timers are gone (EINVAL), ITIMER_REAL survives.  Exit 0 if so. */
static int after_exec(void)
{
	struct itimerval cur;
	struct itimerspec its;

	if (syscall(SYS_timer_gettime, 0, &its) != -1 || errno != EINVAL)
		return 1;
	getitimer(ITIMER_REAL, &cur);
	return cur.it_value.tv_sec > 0 ? 0 : 2;
}

int main(int argc, char **argv)
{
	struct itimerval cur;
	struct sigaction sa;
	struct timespec ts;
	sigset_t set;
	siginfo_t si;
	timer_t id;
	struct sigevent se;
	struct itimerspec its;
	int st;

	if (argc > 1 && strcmp(argv[1], "after-exec") == 0)
		return after_exec();
	tap_plan(13);

	/* 1 us ITIMER_REAL, SIGALRM ignored */
	signal(SIGALRM, SIG_IGN);
	st = child_sleep_status(1);
	check_eq(st, 0, "a child's 200 ms sleep ends while a 1 us ITIMER_REAL fires an ignored SIGALRM");
	getitimer(ITIMER_REAL, &cur);
	check(cur.it_value.tv_sec == 0 && cur.it_value.tv_usec == 0 && cur.it_interval.tv_usec == 1,
	      "after an ignored expiry ITIMER_REAL has stopped (value 0, interval kept)");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	ts.tv_sec = 0;
	ts.tv_nsec = 20000000;
	nanosleep(&ts, NULL);
	check_eq(alarms, 0, "a handler installed later gets nothing: the stopped timer stays stopped");

	/* 1 ms ITIMER_REAL with a handler (SA_RESTART, so waitpid goes on).  Not 1 us: natively a
	 * loaded machine can spend all the parent's time in the handler (Linux promises nothing). */
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	st = child_sleep_status(1000);
	set_real(0, 0);
	check_eq(st, 0, "a child's 200 ms sleep ends while a 1 ms ITIMER_REAL runs a handler in the parent");
	check(alarms > 0, "the parent's handler ran (%ld times)", alarms);

	/* POSIX timer, signal blocked: one pending signal, the rest counted as overrun */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	memset(&se, 0, sizeof(se));
	se.sigev_notify = SIGEV_SIGNAL;
	se.sigev_signo = SIGUSR1;
	timer_create(CLOCK_MONOTONIC, &se, &id);
	memset(&its, 0, sizeof(its));
	its.it_value.tv_nsec = 1000;
	its.it_interval.tv_nsec = 1000;
	timer_settime(id, 0, &its, NULL);
	ts.tv_nsec = 50000000;
	nanosleep(&ts, NULL);
	ts.tv_sec = ts.tv_nsec = 0;
	check_eq(sigtimedwait(&set, &si, &ts), SIGUSR1, "a blocked 1 us POSIX timer leaves its signal pending");
	check(si.si_code == SI_TIMER && si.si_overrun > 1000,
	      "its siginfo counts the periods missed meanwhile as the overrun (%d)", si.si_overrun);
	check_eq(timer_getoverrun(id), si.si_overrun, "timer_getoverrun reports the same overrun");
	timer_delete(id);

	/* POSIX timer with its signal ignored: parked, then queued once unignored */
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	signal(SIGUSR1, SIG_IGN);
	timer_create(CLOCK_MONOTONIC, &se, &id);
	its.it_value.tv_nsec = 1000;
	its.it_interval.tv_nsec = 0;
	its.it_interval.tv_sec = 1000;
	timer_settime(id, 0, &its, NULL);
	ts.tv_nsec = 10000000;
	nanosleep(&ts, NULL);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGUSR1, SIG_DFL);            /* SIGUSR1's default is not "ignore": unignored */
	ts.tv_nsec = 0;
	check_eq(sigtimedwait(&set, &si, &ts), SIGUSR1,
		 "an ignored POSIX timer's signal is queued once the signal is no longer ignored");
	timer_delete(id);

	/* SIG_IGN discards a pending signal */
	kill(getpid(), SIGUSR1);
	signal(SIGUSR1, SIG_IGN);
	sigpending(&set);
	check(!sigismember(&set, SIGUSR1), "setting SIG_IGN discards the pending (blocked) SIGUSR1");
	signal(SIGUSR1, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	check_errno(sigtimedwait(&set, &si, &ts), EAGAIN, "nothing is left to take");

	/* execve deletes POSIX timers and keeps ITIMER_REAL */
	{
		pid_t pid = fork();

		if (pid == 0) {
			char *av[] = {argv[0], "after-exec", NULL};
			struct itimerval v = {{0, 0}, {100, 0}};

			signal(SIGALRM, SIG_IGN);
			se.sigev_notify = SIGEV_NONE;
			timer_create(CLOCK_MONOTONIC, &se, &id);
			setitimer(ITIMER_REAL, &v, NULL);
			execv("/proc/self/exe", av);
			_exit(9);
		}
		waitpid(pid, &st, 0);
		check_eq(st, 0, "after execve the POSIX timer is gone and ITIMER_REAL is still armed");
	}

	/* alarm() rounds the time left to the nearest second */
	signal(SIGALRM, SIG_IGN);
	alarm(100);
	check_eq(alarm(0), 100, "alarm(0) after alarm(100) returns 100");
	return tap_done();
}
