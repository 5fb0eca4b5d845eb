/*
 * ns_pid: PID namespaces made with clone(CLONE_NEWPID) and unshare(CLONE_NEWPID).  The first
 * process is pid 1 with getppid 0 and a process group and session outside (0) until setsid;
 * its children are 2, 3... (fork and vfork); wait4 and kill take and give the namespace's numbers; the
 * parent gets the child's pid in its own namespace; after unshare only the children enter,
 * a second unshare is EINVAL and a fork after the init exited is ENOMEM; orphans go to the
 * namespace's init; signals from inside do not kill the init; its exit kills the rest of the
 * namespace; EPERM unprivileged.  Every namespace is made in a child, which reports through
 * its exit status.
 */
#include "tap.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t clone_newpid(void)
{
	return syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
}

static int status_of(pid_t pid)
{
	int st = -1;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* In the init of a new namespace. */
static int init_ids(void)
{
	int bad = 0;
	if (getpid() != 1 || syscall(SYS_gettid) != 1) bad |= 1;
	if (getppid() != 0) bad |= 2;
	if (getpgrp() != 0 || getsid(0) != 0) bad |= 4;     /* its group and session are outside */
	if (setsid() != 1 || getpgrp() != 1 || getsid(0) != 1) bad |= 8;
	pid_t c = fork();
	if (c == 0)
		_exit(getpid() == 2 && getppid() == 1 ? 7 : 1);
	if (c != 2) bad |= 16;
	if (kill(2, 0) != 0) bad |= 32;
	int st = -1;
	if (waitpid(-1, &st, 0) != 2 || !WIFEXITED(st) || WEXITSTATUS(st) != 7) bad |= 64;
	errno = 0;
	if (kill(12345, 0) != -1 || errno != ESRCH) bad |= 128;
	pid_t v = vfork();
	if (v == 0)
		_exit(9);
	if (v != 3 || waitpid(3, &st, 0) != 3 || !WIFEXITED(st) || WEXITSTATUS(st) != 9) bad |= 256;
	return bad;
}

/* unshare: the caller stays, its children enter; one init only. */
static int unshared(void)
{
	pid_t before = getpid();
	if (syscall(SYS_unshare, CLONE_NEWPID) != 0) return 1;
	if (getpid() != before) return 2;
	errno = 0;
	if (syscall(SYS_unshare, CLONE_NEWPID) != -1 || errno != EINVAL) return 3;
	pid_t c = fork();
	if (c == 0)
		_exit(getpid() == 1 && getppid() == 0 ? 0 : 1);
	if (c <= 0 || status_of(c) != 0) return 4;
	errno = 0;
	pid_t c2 = fork();
	if (c2 == 0)
		_exit(0);
	if (c2 != -1 || errno != ENOMEM) return 5;        /* the namespace's init is gone */
	return 0;
}

/* An orphan of the namespace is adopted by its init. */
static int orphans(void)
{
	pid_t a = fork();
	if (a == 0) {
		pid_t b = fork();
		if (b == 0) {
			for (int i = 0; i < 100000 && getppid() != 1; i++)
				sched_yield();
			_exit(getppid() == 1 && getpid() == 3 ? 5 : 1);
		}
		_exit(0);
	}
	int st, bad = 0;
	if (waitpid(a, &st, 0) != 2) bad |= 1;
	if (waitpid(-1, &st, 0) != 3 || !WIFEXITED(st) || WEXITSTATUS(st) != 5) bad |= 2;
	return bad;
}

/* Signals from inside do not kill the namespace's init. */
static int unkillable(void)
{
	pid_t g = fork();
	if (g == 0)
		_exit(kill(1, SIGTERM) == 0 && kill(1, SIGKILL) == 0 && kill(1, SIGSTOP) == 0 ? 0 : 1);
	return status_of(g) == 0 ? 0 : 2;
}

static int pipefd[2];

/* The init exits while a child of it still runs: that child is killed. */
static int init_leaves_child(void)
{
	pid_t g = fork();
	if (g == 0) {
		close(pipefd[0]);
		for (;;)
			pause();
	}
	return 0;
}

static int nonroot(void)
{
	if (setgid(65534) != 0 || setuid(65534) != 0) return 2;
	errno = 0;
	if (syscall(SYS_unshare, CLONE_NEWPID) != -1 || errno != EPERM) return 3;
	return 0;
}

static int in_child(int (*fn)(void))
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(fn());
	return status_of(pid);
}

static int in_new_ns(int (*fn)(void), pid_t *got)
{
	pid_t pid = clone_newpid();
	if (pid == 0)
		_exit(fn());
	if (got)
		*got = pid;
	return status_of(pid);
}

int main(void)
{
	pid_t pid = 0;
	tap_plan(8);
	check_eq(in_new_ns(init_ids, &pid), 0, "clone(CLONE_NEWPID): pid 1, ppid 0, pgrp/sid 0 until setsid, children 2.., wait and kill by namespace pids");
	check(pid > 1 && pid != getpid(), "the parent gets the child's pid in its own namespace (%d)", pid);
	check_eq(in_child(unshared), 0, "unshare(CLONE_NEWPID): the caller stays, its first child is pid 1; EINVAL again; ENOMEM after the init exited");
	check_eq(in_new_ns(orphans, NULL), 0, "orphans are adopted by the namespace's init");
	check_eq(in_new_ns(unkillable, NULL), 0, "SIGTERM, SIGKILL and SIGSTOP from inside do not stop the namespace's init");

	if (pipe(pipefd) != 0)
		return 1;
	int st = in_new_ns(init_leaves_child, NULL);
	close(pipefd[1]);
	struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
	char c;
	int ready = poll(&p, 1, 60000);          /* a safety net against a hang, not a timing check */
	check(st == 0 && ready == 1 && read(pipefd[0], &c, 1) == 0, "the init's exit kills the rest of its namespace (status %d)", st);
	check_errno(syscall(SYS_clone, CLONE_NEWPID | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM, 0, 0, 0, 0), EINVAL,
		    "CLONE_NEWPID with CLONE_THREAD is EINVAL");
	check_eq(in_child(nonroot), 0, "unshare(CLONE_NEWPID) unprivileged is EPERM");
	return tap_done();
}
