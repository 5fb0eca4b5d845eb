/*
 * proc_init_signals: no process inside a PID namespace can kill or stop its init, by any path
 * a signal takes.  Linux marks a namespace's init SIGNAL_UNKILLABLE: SIGKILL and SIGSTOP sent
 * from inside (kill, tgkill, tkill, rt_sigqueueinfo, pidfd_send_signal, even by the init to
 * itself) are dropped, and a process reparented to the init gets SIGCHLD as its exit signal
 * (reparent_leader: "we don't want people slaying init"), so an orphan made with
 * clone(exit_signal = SIGKILL) cannot kill it when it exits, and plain waitpid (no __WCLONE)
 * reaps it.  A zombie adopted that way is announced to the init anew.  CLONE_PARENT is EINVAL
 * from an init, and the sibling a child makes with it takes the child's own exit signal.
 *
 * The checks run in the init of a new PID namespace (natively and in the sandbox), and, when
 * this program is itself pid 1 (the container's init in the sandbox), once more as itself;
 * natively those four are skipped.  A failing run kills the init: the report says so.
 */
#include "tap.h"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECTIONS 5

static volatile sig_atomic_t chld, usr1;
static void on_chld(int s) { (void)s; chld++; }
static void on_usr1(int s) { (void)s; usr1++; }

/* Every way a child can signal pid 1 with SIGKILL or SIGSTOP: all succeed, none lands. */
static int from_a_child(void)
{
	pid_t c = fork();
	if (c == 0) {
		int r = 0;
		if (kill(1, SIGKILL) != 0 || kill(1, SIGSTOP) != 0) r |= 1;
		if (syscall(SYS_tgkill, 1, 1, SIGKILL) != 0 || syscall(SYS_tkill, 1, SIGSTOP) != 0) r |= 2;
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		si.si_signo = SIGKILL;
		si.si_code = SI_QUEUE;
		si.si_pid = getpid();
		si.si_uid = getuid();
		if (syscall(SYS_rt_sigqueueinfo, 1, SIGKILL, &si) != 0) r |= 4;
		int pfd = syscall(SYS_pidfd_open, 1, 0);
		if (pfd < 0 || syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0) != 0) r |= 8;
		_exit(r);
	}
	int st = -1;
	if (c < 0 || waitpid(c, &st, 0) != c) return 64;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The init's own SIGKILL to itself is dropped too. */
static int to_itself(void)
{
	int r = 0;
	if (kill(1, SIGKILL) != 0) r |= 1;
	if (syscall(SYS_tgkill, 1, 1, SIGKILL) != 0) r |= 2;
	if (syscall(SYS_tkill, 1, SIGSTOP) != 0) r |= 4;
	return r;
}

/* A grandchild made with exit signal SIGKILL outlives its parent, then exits. */
static int orphan_with_sigkill(void)
{
	pid_t w = fork();
	if (w == 0) {
		pid_t g = syscall(SYS_clone, SIGKILL, 0, 0, 0, 0);
		if (g == 0) {
			for (int i = 0; i < 1000000 && getppid() != 1; i++)
				sched_yield();
			_exit(getppid() == 1 ? 3 : 4);
		}
		_exit(g > 0 ? 0 : 1);
	}
	int st = -1, r = 0;
	if (w < 0 || waitpid(w, &st, 0) != w || !WIFEXITED(st) || WEXITSTATUS(st) != 0) r |= 1;
	pid_t got = waitpid(-1, &st, 0);                  /* no __WCLONE: its exit signal is SIGCHLD now */
	if (got <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 3) r |= 2;
	return r;
}

/* A zombie whose exit signal (SIGKILL) killed its parent is adopted and announced with SIGCHLD. */
static int adopted_zombie(void)
{
	pid_t w = fork();
	if (w == 0) {
		pid_t g = syscall(SYS_clone, SIGKILL, 0, 0, 0, 0);
		if (g == 0)
			_exit(6);
		for (;;)
			pause();                                  /* the SIGKILL of g's exit ends it */
	}
	int st = -1, r = 0;
	if (w < 0 || waitpid(w, &st, 0) != w || !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) r |= 1;
	chld = 0;
	pid_t got = waitpid(-1, &st, 0);
	if (got <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 6) r |= 2;
	if (usr1 != 0) r |= 4;
	return r;
}

/* CLONE_PARENT: the init may not make siblings (EINVAL); a child's sibling takes the child's
 * exit signal (SIGCHLD), never the one asked for (SIGKILL), so its exit spares the init. */
static int clone_parent(void)
{
	int r = 0, st = -1;
	errno = 0;
	pid_t s = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
	if (s == 0)
		_exit(0);
	if (s != -1 || errno != EINVAL) r |= 1;
	pid_t w = fork();
	if (w == 0) {
		pid_t g = syscall(SYS_clone, CLONE_PARENT | SIGKILL, 0, 0, 0, 0);
		if (g == 0)
			_exit(7);
		_exit(g > 0 ? 0 : 1);
	}
	if (w < 0 || waitpid(w, &st, 0) != w || !WIFEXITED(st) || WEXITSTATUS(st) != 0) r |= 2;
	pid_t got = waitpid(-1, &st, 0);                  /* no __WCLONE: the sibling's exit signal is SIGCHLD */
	if (got <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 7) r |= 4;
	return r;
}

static void run_all(int out[SECTIONS])
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = on_chld;
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	out[0] = from_a_child();
	out[1] = to_itself();
	out[2] = orphan_with_sigkill();
	out[3] = adopted_zombie();
	out[4] = clone_parent();
}

static const char *names[SECTIONS] = {
	"kill, tgkill, tkill, rt_sigqueueinfo and pidfd_send_signal of SIGKILL/SIGSTOP from a child succeed and do not land",
	"the init's SIGKILL and SIGSTOP to itself are dropped",
	"an orphan made with exit signal SIGKILL is adopted with SIGCHLD: its exit spares the init, plain waitpid reaps it",
	"a zombie whose SIGKILL exit signal killed its parent is adopted: plain waitpid reaps it",
	"CLONE_PARENT: EINVAL from the init; a child's sibling gets the child's exit signal, not SIGKILL",
};

static void report(const char *where, const int res[SECTIONS])
{
	for (int i = 0; i < SECTIONS; i++)
		check(res[i] == 0, "%s: %s (failures %#x)", where, names[i], res[i]);
}

int main(void)
{
	int res[SECTIONS], fds[2];
	tap_plan(2 * SECTIONS);

	if (pipe(fds) != 0)
		return 1;
	pid_t init = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
	if (init == 0) {
		close(fds[0]);
		int got[SECTIONS];
		run_all(got);
		if (write(fds[1], got, sizeof(got)) != sizeof(got))
			_exit(2);
		_exit(0);
	}
	close(fds[1]);
	ssize_t n = init > 0 ? read(fds[0], res, sizeof(res)) : -1;
	int st = -1;
	if (init > 0)
		waitpid(init, &st, 0);
	if (n != sizeof(res)) {
		for (int i = 0; i < SECTIONS; i++)
			res[i] = 0x100;                           /* the namespace's init died */
	}
	report("a new PID namespace's init", res);

	if (getpid() == 1) {
		run_all(res);
		report("the container's init", res);
	} else {
		for (int i = 0; i < SECTIONS; i++)
			tap_printf("ok %d - the container's init: %s # SKIP not pid 1 (natively)\n", ++tap_count, names[i]);
	}
	return tap_done();
}
