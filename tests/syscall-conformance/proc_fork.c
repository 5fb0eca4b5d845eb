/*
 * proc_fork: fork vfork clone execve wait4 waitid exit exit_group and the
 * wait status encoding.
 *
 * Success paths: fork/raw clone(SIGCHLD) children with their parent's pid
 * as ppid; a fork child's memory is a private copy, MAP_SHARED stays
 * shared; exit codes, signal deaths (no core flag with RLIMIT_CORE 0),
 * stop (0x137f) and continue (0xffff) statuses through wait4, and the same
 * events through waitid (CLD_EXITED CLD_KILLED CLD_STOPPED CLD_CONTINUED);
 * WNOHANG on a running child; WNOWAIT leaves the zombie; P_PGID and P_ALL;
 * a child with a non-SIGCHLD exit signal seen only with __WALL; exit(2) of
 * the main thread keeps the process alive until another thread's
 * exit_group; vfork suspends the parent until the child exits and shares
 * its memory; execve of this program again: argv and envp arrive,
 * O_CLOEXEC fds are closed and others kept, caught signals are reset to
 * SIG_DFL while ignored ones stay ignored, the pid is kept.
 * Errno paths: ECHILD (no such child, no children), EINVAL (bad wait4
 * options, bad waitid idtype, waitid without WEXITED/WSTOPPED/WCONTINUED),
 * execve ENOENT (also a #! script whose interpreter is missing) EACCES
 * (file without x bit, directory) EFAULT E2BIG.
 */
#include "tap.h"
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#define EXEC_MARK "exec-child"

static void nap_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void on_usr2(int sig) { (void)sig; }

/* The program re-executed by the execve checks: report through the exit status. */
static int exec_child(int argc, char **argv)
{
	int bits = 0;
	struct sigaction sa;
	const char *x = getenv("CONF_X");

	if (argc == 5 && strcmp(argv[1], EXEC_MARK) == 0)
		bits |= 1;
	if (x && strcmp(x, "yes") == 0 && getenv("PATH") == NULL)
		bits |= 2;
	if (fcntl(atoi(argv[2]), F_GETFD) == -1 && errno == EBADF)
		bits |= 4;               /* the O_CLOEXEC fd is gone */
	if (fcntl(atoi(argv[3]), F_GETFD) == 0)
		bits |= 8;               /* the plain fd survived */
	if (sigaction(SIGUSR2, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		bits |= 16;              /* a caught signal is reset */
	if (sigaction(SIGUSR1, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
		bits |= 32;              /* an ignored one stays ignored */
	if (getpid() == atoi(argv[4]))
		bits |= 64;              /* execve keeps the pid */
	return bits;
}

static volatile int thread_go;
static void *exit_group_later(void *arg)
{
	(void)arg;
	nap_ms(100);
	syscall(SYS_exit_group, 4);
	return NULL;
}

int main(int argc, char **argv)
{
	int st;
	pid_t pid, me = getpid();
	siginfo_t si;

	if (argc > 1 && strcmp(argv[1], EXEC_MARK) == 0)
		return exec_child(argc, argv);

	tap_plan(55);

	/* --- fork, exit codes --- */
	pid = fork();
	if (pid == 0)
		_exit(getppid() == me ? 7 : 1);
	check(pid > 0, "fork returns the child's pid in the parent");
	check_eq(wait4(pid, &st, 0, NULL), pid, "wait4 reaps the child");
	check_eq(st, 7 << 8, "exit(7) is status 0x0700 (child saw getppid() == parent)");
	check(WIFEXITED(st) && WEXITSTATUS(st) == 7, "WIFEXITED, WEXITSTATUS 7");

	pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (pid == 0)
		_exit(getppid() == me ? 0x85 : 1);
	check(pid > 0, "raw clone(SIGCHLD) is a fork");
	check_eq(wait4(pid, &st, 0, NULL), pid, "wait4 reaps the clone child");
	check_eq(st, 0x8500, "exit(0x85) of the clone child is 0x8500");

	pid = fork();
	if (pid == 0)
		_exit(0x1234);
	wait4(pid, &st, 0, NULL);
	check_eq(st, 0x3400, "only the low 8 bits of the exit code survive");

	/* --- memory after fork: private copies, shared mappings shared --- */
	{
		static int global = 1;
		char *heap = malloc(1 << 20);
		int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		memset(heap, 'p', 1 << 20);
		*shared = 0;
		pid = fork();
		if (pid == 0) {
			global = 2;
			memset(heap, 'c', 1 << 20);
			*shared = 42;
			_exit(global == 2 && heap[12345] == 'c' ? 0 : 1);
		}
		wait4(pid, &st, 0, NULL);
		check(st == 0 && global == 1 && heap[0] == 'p' && heap[(1 << 20) - 1] == 'p',
		      "fork: the child's writes to globals and the heap stay in the child");
		check_eq(*shared, 42, "fork: a MAP_SHARED page is shared with the child");
		free(heap);
		munmap(shared, 4096);
	}

	/* --- signal deaths --- */
	pid = fork();
	if (pid == 0) {
		for (;;)
			pause();
	}
	kill(pid, SIGKILL);
	check_eq(wait4(pid, &st, 0, NULL), pid, "wait4 a SIGKILLed child");
	check_eq(st, SIGKILL, "SIGKILL death is status 9");
	check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && !WCOREDUMP(st), "WIFSIGNALED, WTERMSIG 9, no core");

	pid = fork();
	if (pid == 0) {
		struct rlimit rl = {0, 0};
		setrlimit(RLIMIT_CORE, &rl);
		signal(SIGABRT, SIG_DFL);
		raise(SIGABRT);
		_exit(1);
	}
	wait4(pid, &st, 0, NULL);
	check_eq(st, SIGABRT, "SIGABRT death with RLIMIT_CORE 0 is status 6 (no 0x80 core flag)");

	/* --- stop and continue --- */
	pid = fork();
	if (pid == 0) {
		raise(SIGSTOP);
		_exit(3);
	}
	check_eq(wait4(pid, &st, WUNTRACED, NULL), pid, "wait4 WUNTRACED sees the stop");
	check_eq(st, 0x137f, "stopped by SIGSTOP is status 0x137f");
	check_eq(wait4(pid, &st, WNOHANG | WUNTRACED, NULL), 0, "a stop is reported once");
	kill(pid, SIGCONT);
	check_eq(wait4(pid, &st, WCONTINUED, NULL), pid, "wait4 WCONTINUED sees the continue");
	check_eq(st, 0xffff, "continued is status 0xffff");
	check_eq(wait4(pid, &st, 0, NULL), pid, "then the exit");
	check_eq(st, 0x0300, "exit(3) after SIGCONT");

	pid = fork();
	if (pid == 0) {
		raise(SIGSTOP);
		for (;;)
			pause();     /* only SIGKILL ends it */
	}
	memset(&si, 0, sizeof(si));
	check_eq(waitid(P_PID, pid, &si, WSTOPPED), 0, "waitid WSTOPPED");
	check(si.si_pid == pid && si.si_signo == SIGCHLD && si.si_code == CLD_STOPPED && si.si_status == SIGSTOP,
	      "waitid: si_pid, SIGCHLD, CLD_STOPPED, si_status SIGSTOP");
	kill(pid, SIGCONT);
	memset(&si, 0, sizeof(si));
	waitid(P_PID, pid, &si, WCONTINUED);
	check(si.si_pid == pid && si.si_code == CLD_CONTINUED && si.si_status == SIGCONT,
	      "waitid WCONTINUED: CLD_CONTINUED, si_status SIGCONT");
	kill(pid, SIGKILL);
	memset(&si, 0, sizeof(si));
	waitid(P_PID, pid, &si, WEXITED);
	check(si.si_pid == pid && si.si_code == CLD_KILLED && si.si_status == SIGKILL,
	      "waitid WEXITED: CLD_KILLED, si_status SIGKILL");

	/* --- WNOHANG, WNOWAIT, P_PGID, P_ALL --- */
	pid = fork();
	if (pid == 0) {
		nap_ms(200);
		_exit(5);
	}
	check_eq(wait4(pid, &st, WNOHANG, NULL), 0, "wait4 WNOHANG on a running child is 0");
	memset(&si, 0xff, sizeof(si));
	check_eq(waitid(P_PID, pid, &si, WEXITED | WNOHANG), 0, "waitid WNOHANG on a running child is 0");
	check_eq(si.si_pid, 0, "... and zeroes si_pid");
	memset(&si, 0, sizeof(si));
	check_eq(waitid(P_PID, pid, &si, WEXITED | WNOWAIT), 0, "waitid WNOWAIT");
	check(si.si_pid == pid && si.si_code == CLD_EXITED && si.si_status == 5, "CLD_EXITED, si_status 5");
	check_eq(wait4(pid, &st, 0, NULL), pid, "the WNOWAIT zombie is still there for wait4");

	pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		nap_ms(50);
		_exit(6);
	}
	setpgid(pid, pid);
	memset(&si, 0, sizeof(si));
	check_eq(waitid(P_PGID, pid, &si, WEXITED), 0, "waitid P_PGID");
	check(si.si_pid == pid && si.si_status == 6, "P_PGID found the child of that group");

	pid = fork();
	if (pid == 0)
		_exit(8);
	memset(&si, 0, sizeof(si));
	check_eq(waitid(P_ALL, 0, &si, WEXITED), 0, "waitid P_ALL");
	check(si.si_pid == pid && si.si_status == 8, "P_ALL found the child");

	/* --- errno paths --- */
	check_errno(wait4(-1, &st, WNOHANG, NULL), ECHILD, "wait4(-1) without children is ECHILD");
	check_errno(wait4(me, &st, 0, NULL), ECHILD, "wait4 on a non-child is ECHILD");
	check_errno(wait4(-1, &st, 0x10000000, NULL), EINVAL, "wait4 with an unknown option is EINVAL");
	check_errno(waitid(99, 0, &si, WEXITED), EINVAL, "waitid with a bad idtype is EINVAL");
	check_errno(waitid(P_ALL, 0, &si, WNOHANG), EINVAL, "waitid without WEXITED/WSTOPPED/WCONTINUED is EINVAL");

	/* --- a clone child with exit signal SIGUSR1: only __WALL sees it --- */
	{
		sigset_t set;
		struct timespec zero = {0, 0};
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigprocmask(SIG_BLOCK, &set, NULL);
		pid = syscall(SYS_clone, SIGUSR1, 0, 0, 0, 0);
		if (pid == 0)
			_exit(9);
		nap_ms(50);
		check_errno(wait4(pid, &st, WNOHANG, NULL), ECHILD, "wait4 without __WALL ignores a non-SIGCHLD child");
		check_eq(wait4(pid, &st, __WALL, NULL), pid, "wait4 __WALL reaps it");
		check_eq(st, 9 << 8, "its status is 0x0900");
		check_eq(sigtimedwait(&set, NULL, &zero), SIGUSR1, "its exit signal SIGUSR1 is pending");
		sigprocmask(SIG_UNBLOCK, &set, NULL);
	}

	/* --- exit(2) of the main thread vs exit_group --- */
	pid = fork();
	if (pid == 0) {
		pthread_t t;
		pthread_create(&t, NULL, exit_group_later, NULL);
		syscall(SYS_exit, 3);   /* ends only this thread */
		_exit(1);
	}
	wait4(pid, &st, 0, NULL);
	check_eq(st, 4 << 8, "main thread exit(3), other thread exit_group(4): status is 4");

	/* --- vfork --- */
	{
		static volatile int shared;
		shared = 0;
		pid = vfork();
		if (pid == 0) {
			nap_ms(50);
			shared = 42;
			_exit(0);
		}
		check_eq(shared, 42, "vfork: parent resumes after the child exits and sees its writes");
		check_eq(wait4(pid, &st, 0, NULL), pid, "vfork child is reaped");
	}

	/* --- execve --- */
	{
		int cfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		int pfd = open("/dev/null", O_RDONLY);
		char a2[16], a3[16], a4[16];
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_usr2;
		sigaction(SIGUSR2, &sa, NULL);
		signal(SIGUSR1, SIG_IGN);
		pid = fork();
		if (pid == 0) {
			char *args[6] = {argv[0], EXEC_MARK, a2, a3, a4, NULL};
			char *envs[] = {"CONF_X=yes", NULL};
			snprintf(a2, sizeof(a2), "%d", cfd);
			snprintf(a3, sizeof(a3), "%d", pfd);
			snprintf(a4, sizeof(a4), "%d", getpid());
			execve(argv[0], args, envs);
			_exit(255);
		}
		wait4(pid, &st, 0, NULL);
		check(WIFEXITED(st), "execve'd child exits");
		check_eq(WEXITSTATUS(st), 127, "execve: argv, envp, O_CLOEXEC closed, plain fd kept, handler reset, "
			 "SIG_IGN kept, pid kept (bits 1|2|4|8|16|32|64)");
		signal(SIGUSR1, SIG_DFL);
		close(cfd);
		close(pfd);
	}
	{
		char *args[] = {"x", NULL}, *envs[] = {NULL};
		static char big[140000];
		char *bigargs[] = {"x", big, NULL};

		check_errno(execve("/nonexistent", args, envs), ENOENT, "execve of a missing file is ENOENT");
		check_errno(execve("/fixtures/file.txt", args, envs), EACCES, "execve of a file without x bit is EACCES");
		check_errno(execve("/fixtures/dir", args, envs), EACCES, "execve of a directory is EACCES");
		check_errno(execve(BAD_PTR, args, envs), EFAULT, "execve of a bad path pointer is EFAULT");
		check_errno(execve("/fixtures/script.sh", args, envs), ENOENT,
			    "execve of a #! script whose interpreter (/bin/sh) is missing is ENOENT");
		memset(big, 'a', sizeof(big) - 1);
		check_errno(execve(argv[0], bigargs, envs), E2BIG, "execve with a 140000-byte argument is E2BIG");
	}
	return tap_done();
}
