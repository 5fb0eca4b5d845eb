/*
 * proc_sigchld: SIGCHLD on a child's exit, stop and continue, and the
 * dispositions that change what a parent hears.
 *
 * SIGCHLD is blocked and collected with rt_sigtimedwait (2 s limit, so a
 * missing signal fails a check instead of hanging).  Checked: exit ->
 * CLD_EXITED with si_pid, si_uid and si_status the exit code; stop ->
 * CLD_STOPPED, si_status SIGSTOP; continue -> CLD_CONTINUED, si_status
 * SIGCONT; kill -> CLD_KILLED, si_status SIGKILL; SA_NOCLDSTOP: no SIGCHLD
 * for the stop, but one for the exit; SIGCHLD set to SIG_IGN: children are
 * reaped automatically (wait4 waits for all of them, then ECHILD);
 * SA_NOCLDWAIT likewise, while a handler still runs; a child's
 * exit_signal chosen with clone (SIGUSR2) is what the parent gets.
 */
#include "tap.h"
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

static int take(int sig, siginfo_t *si)
{
	sigset_t s;
	struct timespec ts = {2, 0};
	sigemptyset(&s);
	sigaddset(&s, sig);
	memset(si, 0, sizeof(*si));
	return sigtimedwait(&s, si, &ts);
}

static int none_pending(int sig, long ms)
{
	sigset_t s;
	siginfo_t si;
	struct timespec ts = {0, ms * 1000000L};
	sigemptyset(&s);
	sigaddset(&s, sig);
	return sigtimedwait(&s, &si, &ts) == -1 && errno == EAGAIN;
}

static volatile int handled;
static void on_chld(int sig) { (void)sig; handled++; }

int main(void)
{
	sigset_t s;
	siginfo_t si;
	pid_t pid;
	int st;
	struct sigaction sa;

	tap_plan(16);
	sigemptyset(&s);
	sigaddset(&s, SIGCHLD);
	sigaddset(&s, SIGUSR2);
	sigprocmask(SIG_BLOCK, &s, NULL);

	pid = fork();
	if (pid == 0)
		_exit(12);
	check_eq(take(SIGCHLD, &si), SIGCHLD, "a child's exit sends SIGCHLD");
	check(si.si_code == CLD_EXITED && si.si_pid == pid && si.si_status == 12 && si.si_uid == getuid(),
	      "CLD_EXITED, si_pid, si_uid, si_status 12");
	waitpid(pid, &st, 0);

	pid = fork();
	if (pid == 0) {
		raise(SIGSTOP);
		for (;;)
			pause();
	}
	check_eq(take(SIGCHLD, &si), SIGCHLD, "a child's stop sends SIGCHLD");
	check(si.si_code == CLD_STOPPED && si.si_pid == pid && si.si_status == SIGSTOP, "CLD_STOPPED, si_status SIGSTOP");
	waitpid(pid, &st, WUNTRACED);
	kill(pid, SIGCONT);
	check_eq(take(SIGCHLD, &si), SIGCHLD, "a child's continue sends SIGCHLD");
	check(si.si_code == CLD_CONTINUED && si.si_status == SIGCONT, "CLD_CONTINUED, si_status SIGCONT");
	kill(pid, SIGKILL);
	check_eq(take(SIGCHLD, &si), SIGCHLD, "a child's death by signal sends SIGCHLD");
	check(si.si_code == CLD_KILLED && si.si_status == SIGKILL, "CLD_KILLED, si_status SIGKILL");
	waitpid(pid, &st, WCONTINUED);
	while (waitpid(pid, &st, 0) > 0)
		;

	/* SA_NOCLDSTOP */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_chld;
	sa.sa_flags = SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	pid = fork();
	if (pid == 0) {
		raise(SIGSTOP);
		_exit(0);
	}
	waitpid(pid, &st, WUNTRACED);
	check(WIFSTOPPED(st) && none_pending(SIGCHLD, 100), "SA_NOCLDSTOP: no SIGCHLD for the stop");
	kill(pid, SIGCONT);
	waitpid(pid, &st, 0);
	check_eq(take(SIGCHLD, &si), SIGCHLD, "SA_NOCLDSTOP: SIGCHLD for the exit still comes");
	check_eq(si.si_code, CLD_EXITED, "with CLD_EXITED");

	/* SIG_IGN: automatic reaping */
	signal(SIGCHLD, SIG_IGN);
	for (int i = 0; i < 3; i++)
		if (fork() == 0)
			_exit(0);
	check_errno(wait4(-1, &st, 0, NULL), ECHILD, "SIGCHLD ignored: wait4 waits for the children to vanish, then ECHILD");

	/* SA_NOCLDWAIT with a handler */
	sigprocmask(SIG_UNBLOCK, &s, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_chld;
	sa.sa_flags = SA_NOCLDWAIT;
	sigaction(SIGCHLD, &sa, NULL);
	handled = 0;
	pid = fork();
	if (pid == 0)
		_exit(0);
	check_errno(wait4(-1, &st, 0, NULL), ECHILD, "SA_NOCLDWAIT: the child is reaped automatically (ECHILD)");
	{
		struct timespec ts = {0, 1000000};
		for (int i = 0; i < 1000 && !handled; i++)
			nanosleep(&ts, NULL);
	}
	check_eq(handled, 1, "SA_NOCLDWAIT: the handler still ran");
	signal(SIGCHLD, SIG_DFL);
	sigprocmask(SIG_BLOCK, &s, NULL);

	/* clone with exit signal SIGUSR2 */
	pid = syscall(SYS_clone, SIGUSR2, 0, 0, 0, 0);
	if (pid == 0)
		_exit(5);
	check_eq(take(SIGUSR2, &si), SIGUSR2, "a clone child with exit_signal SIGUSR2 sends SIGUSR2");
	check(si.si_code == CLD_EXITED && si.si_pid == pid && si.si_status == 5, "with CLD_EXITED and its status");
	if (!(si.si_code == CLD_EXITED && si.si_pid == pid && si.si_status == 5))
		tap_note("si_code %d si_pid %d (child %d) si_status %d", si.si_code, si.si_pid, pid, si.si_status);
	waitpid(pid, &st, __WALL);
	return tap_done();
}
