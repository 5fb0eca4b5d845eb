/*
 * proc_pgrp: process groups, sessions and prctl.
 *
 * Success paths: getpgrp == getpgid(0) == getpgid(getpid()); a forked
 * child inherits its parent's group and session; setpgid(0, 0) makes a
 * group leader, the parent can move a child into that group or its own;
 * setsid in a non-leader child makes it session and group leader
 * (getsid(0) == getpgrp() == getpid()); kill(-pgid) reaches every member
 * of a group.  prctl: PR_SET_NAME/PR_GET_NAME (truncated to 15 bytes),
 * PR_SET_PDEATHSIG/PR_GET_PDEATHSIG (and a parent's death delivers it),
 * PR_SET_DUMPABLE/PR_GET_DUMPABLE, PR_SET_NO_NEW_PRIVS (sticky: its
 * starting value differs between a chroot and a container, so it is only
 * noted), PR_SET_CHILD_SUBREAPER/PR_GET_CHILD_SUBREAPER (an orphaned
 * grandchild is reparented to the subreaper).
 * Errno paths: ESRCH (getpgid/getsid/setpgid of a missing pid), EINVAL
 * (setpgid with a negative pgid, prctl with an unknown option, bad
 * dumpable value, pdeathsig 65, no_new_privs 0 or with extra args), EPERM
 * (setsid of a group leader, setpgid of a session leader, setpgid into a
 * group of another session, setpgid to a nonexistent group), EFAULT.
 */
#include "tap.h"
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

#define MISSING 0x3ffffff0

static void nap_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int child_status(pid_t pid)
{
	int st = -1;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

int main(void)
{
	pid_t me = getpid(), pid, pid2;
	int p[2];
	char name[32];

	tap_plan(45);

	/* --- queries --- */
	check_eq(getpgid(0), getpgrp(), "getpgid(0) == getpgrp()");
	check_eq(getpgid(me), getpgrp(), "getpgid(getpid()) == getpgrp()");
	check_ok(getsid(0), "getsid(0)");
	check_eq(getsid(me), getsid(0), "getsid(getpid()) == getsid(0)");
	check_errno(getpgid(MISSING), ESRCH, "getpgid of a missing pid is ESRCH");
	check_errno(getsid(MISSING), ESRCH, "getsid of a missing pid is ESRCH");
	check_errno(setpgid(MISSING, 0), ESRCH, "setpgid of a missing pid is ESRCH");
	check_errno(setpgid(0, -1), EINVAL, "setpgid with pgid -1 is EINVAL");

	/* --- a child: inheritance, setpgid --- */
	pipe(p);
	pid = fork();
	if (pid == 0) {
		char c;
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			_exit(1);
		_exit(getpgrp() == getpid() ? 0 : 2);
	}
	close(p[0]);
	check_eq(getpgid(pid), getpgrp(), "a child inherits its parent's process group");
	check_eq(getsid(pid), getsid(0), "and its session");
	check_eq(setpgid(pid, pid), 0, "the parent makes the child a group leader: setpgid(child, child)");
	check_eq(getpgid(pid), pid, "getpgid(child) is the child's pid");
	check_errno(setpgid(pid, MISSING), EPERM, "setpgid into a nonexistent group is EPERM");
	write(p[1], "x", 1);
	close(p[1]);
	check_eq(child_status(pid), 0, "the child sees getpgrp() == getpid()");

	/* --- setsid in a child --- */
	pipe(p);
	pid = fork();
	if (pid == 0) {
		int bits = 0;
		char c;
		close(p[0]);
		if (setsid() == getpid())
			bits |= 1;
		if (getsid(0) == getpid() && getpgrp() == getpid())
			bits |= 2;
		if (setsid() == -1 && errno == EPERM)
			bits |= 4;      /* already a leader */
		if (setpgid(0, 0) == -1 && errno == EPERM)
			bits |= 8;      /* a session leader cannot change group */
		if (write(p[1], "r", 1) != 1)
			_exit(99);
		read(p[1], &c, 0);
		nap_ms(300);
		_exit(bits);
	}
	close(p[1]);
	{
		char c;
		read(p[0], &c, 1);
		close(p[0]);
	}
	check_eq(getsid(pid), pid, "after setsid the child leads its own session");
	check_errno(setpgid(pid, pid), EPERM, "the parent cannot setpgid a child in another session");
	check_eq(child_status(pid), 15, "setsid: returns the pid, leads session and group, "
		 "second setsid EPERM, setpgid of a session leader EPERM");

	/* a group leader cannot setsid */
	pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		_exit(setsid() == -1 && errno == EPERM ? 0 : 1);
	}
	check_eq(child_status(pid), 0, "setsid of a process group leader is EPERM");

	/* --- kill(-pgid) --- */
	pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		for (;;)
			pause();
	}
	setpgid(pid, pid);
	pid2 = fork();
	if (pid2 == 0) {
		for (;;)
			pause();
	}
	setpgid(pid2, pid);
	check_eq(getpgid(pid2), pid, "setpgid moves a second child into the first one's group");
	check_eq(kill(-pid, SIGTERM), 0, "kill(-pgid, SIGTERM)");
	check(child_status(pid) == 100 + SIGTERM && child_status(pid2) == 100 + SIGTERM,
	      "both members of the group died of SIGTERM");
	check_errno(kill(-pid, SIGTERM), ESRCH, "kill of an empty group is ESRCH");

	/* --- prctl names --- */
	check_eq(prctl(PR_SET_NAME, "conformance-proc-pgrp-long"), 0, "PR_SET_NAME");
	memset(name, 0, sizeof(name));
	check_eq(prctl(PR_GET_NAME, name), 0, "PR_GET_NAME");
	check_str(name, "conformance-pro", "the name is truncated to 15 bytes");
	check_errno(prctl(PR_GET_NAME, BAD_PTR), EFAULT, "PR_GET_NAME to a bad pointer is EFAULT");

	/* --- pdeathsig --- */
	check_eq(prctl(PR_SET_PDEATHSIG, SIGUSR1), 0, "PR_SET_PDEATHSIG SIGUSR1");
	{
		int iv = -1;
		check_eq(prctl(PR_GET_PDEATHSIG, &iv), 0, "PR_GET_PDEATHSIG");
		check_eq(iv, SIGUSR1, "reads SIGUSR1");
	}
	check_errno(prctl(PR_SET_PDEATHSIG, 65), EINVAL, "PR_SET_PDEATHSIG 65 is EINVAL");
	prctl(PR_SET_PDEATHSIG, 0);
	pipe(p);
	pid = fork();
	if (pid == 0) {
		/* middle process: its child asks for SIGTERM when the middle one dies */
		pid_t gc = fork();
		if (gc == 0) {
			char c;
			prctl(PR_SET_PDEATHSIG, SIGUSR2);
			sigset_t s;
			sigemptyset(&s);
			sigaddset(&s, SIGUSR2);
			sigprocmask(SIG_BLOCK, &s, NULL);
			if (write(p[1], "g", 1) != 1)
				_exit(1);
			struct timespec ts = {5, 0};
			int sig = sigtimedwait(&s, NULL, &ts);
			/* D: got it; T: timed out; I: EINTR; N: anything else */
			c = sig == SIGUSR2 ? 'D' : sig == -1 && errno == EAGAIN ? 'T' : sig == -1 && errno == EINTR ? 'I' : 'N';
			if (write(p[1], &c, 1) != 1)
				_exit(1);
			_exit(0);
		}
		char c;
		if (read(p[0], &c, 1) != 1)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	{
		char c = 0;
		child_status(pid);
		read(p[0], &c, 1);
		check_eq(c, 'D', "PR_SET_PDEATHSIG: the grandchild got SIGUSR2 when its parent died");
		close(p[0]);
	}

	/* --- dumpable, no_new_privs --- */
	check_eq(prctl(PR_GET_DUMPABLE), 1, "PR_GET_DUMPABLE is 1");
	check_eq(prctl(PR_SET_DUMPABLE, 0), 0, "PR_SET_DUMPABLE 0");
	check_eq(prctl(PR_GET_DUMPABLE), 0, "reads 0");
	check_errno(prctl(PR_SET_DUMPABLE, 2), EINVAL, "PR_SET_DUMPABLE 2 is EINVAL");
	prctl(PR_SET_DUMPABLE, 1);
	tap_note("PR_GET_NO_NEW_PRIVS at start: %d", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	check_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0, "PR_SET_NO_NEW_PRIVS 1");
	check_eq(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), 1, "PR_GET_NO_NEW_PRIVS reads 1");
	check_errno(prctl(PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0), EINVAL, "PR_SET_NO_NEW_PRIVS 0 is EINVAL");
	check_errno(prctl(PR_SET_NO_NEW_PRIVS, 1, 1, 0, 0), EINVAL, "PR_SET_NO_NEW_PRIVS with arg3 set is EINVAL");
	check_errno(prctl(0x7ffe, 0, 0, 0, 0), EINVAL, "an unknown prctl option is EINVAL");

	/* --- child subreaper --- */
	check_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0, "PR_SET_CHILD_SUBREAPER 1");
	{
		int iv = -1;
		check_eq(prctl(PR_GET_CHILD_SUBREAPER, &iv), 0, "PR_GET_CHILD_SUBREAPER");
		check_eq(iv, 1, "reads 1");
	}
	pipe(p);
	pid = fork();
	if (pid == 0) {
		pid_t gc = fork();
		if (gc == 0) {
			char c;
			if (read(p[0], &c, 1) != 1)
				_exit(1);
			_exit(getppid() == me ? 33 : 34);
		}
		_exit(0);
	}
	child_status(pid);
	write(p[1], "x", 1);
	{
		int st = 0;
		pid_t got;
		/* As PID 1 (in a container) we also inherit the PR_SET_PDEATHSIG
		 * test's orphan (exit 0): skip it. */
		while ((got = wait(&st)) > 0 && st == 0)
			;
		check(got > 0 && got != pid, "the orphaned grandchild is reparented to us and reaped by wait");
		check_eq(st, 33 << 8, "it saw getppid() == the subreaper (exit 33; 34: another ppid)");
	}
	close(p[0]);
	close(p[1]);
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	return tap_done();
}
