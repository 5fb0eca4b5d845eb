/*
 * seccomp_filter: seccomp(2) and prctl(PR_SET_SECCOMP/PR_GET_SECCOMP) with classic BPF
 * filters: SECCOMP_RET_ERRNO (EPERM, a chosen errno, 0, capped at 4095, the A register
 * from BPF_LEN), RET_TRAP (SIGSYS siginfo: si_code SYS_SECCOMP, si_errno, si_syscall,
 * si_arch, and the syscall number left in rax), RET_KILL_PROCESS / KILL_THREAD / an unknown
 * action (death by SIGSYS), RET_TRACE and RET_USER_NOTIF with no tracer or listener (ENOSYS),
 * RET_LOG, stacked filters (lowest action wins; among equals the newest), argument checks,
 * inheritance over fork and execve, TSYNC, strict mode (SIGKILL), GET_ACTION_AVAIL,
 * GET_NOTIF_SIZES, and the errors: EINVAL for bad programs and flags, EFAULT, EACCES
 * without no_new_privs for a non-root caller.
 *
 * Every filter is installed in a forked child, which reports through its exit status.
 */
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#define EXEC_MARK "seccomp-exec-child"
#define NR_OFF offsetof(struct seccomp_data, nr)
#define ARG0_OFF offsetof(struct seccomp_data, args[0])
#define ARG1_OFF offsetof(struct seccomp_data, args[1])

static int sys_seccomp(unsigned op, unsigned flags, void *args)
{
	return syscall(SYS_seccomp, op, flags, args);
}

static int install(struct sock_filter *f, unsigned short n, unsigned flags)
{
	struct sock_fprog prog = {.len = n, .filter = f};
	return sys_seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* A filter: syscall NR gets action RET, every other one is allowed. */
#define DENY_ONE(nr, ret) {						\
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NR_OFF),			\
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),		\
	BPF_STMT(BPF_RET | BPF_K, (ret)),				\
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),			\
}

static int fails_with(long r, int e)
{
	return r == -1 && errno == e;
}

/* Fork; the child runs fn and exits with its result; the wait status. */
static int in_child(int (*fn)(void))
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(fn());
	int st = -1;
	waitpid(pid, &st, 0);
	return st;
}

static volatile siginfo_t trap_info;
static volatile long trap_rax = -1;
static volatile int traps;

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	memcpy((void *)&trap_info, si, sizeof(*si));
	trap_rax = ((ucontext_t *)uc)->uc_mcontext.gregs[REG_RAX];
	traps++;
}

static int filter_errno(void)
{
	/* getpgid: A = BPF_LEN (64) | RET_ERRNO -> errno 64; getpriority(..., 0xdead): errno 0xdead capped */
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NR_OFF),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_uname, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpgrp, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EBADFD),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getsid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0x5000),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpgid, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
		BPF_STMT(BPF_ALU | BPF_OR | BPF_K, SECCOMP_RET_ERRNO),
		BPF_STMT(BPF_RET | BPF_A, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG1_OFF),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xdead, 0, 3),
		BPF_STMT(BPF_ST, 3),
		BPF_STMT(BPF_LDX | BPF_MEM, 3),
		BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_MISC | BPF_TXA, 0),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xfff),
		BPF_STMT(BPF_ALU | BPF_OR | BPF_K, SECCOMP_RET_ERRNO),
		BPF_STMT(BPF_RET | BPF_A, 0),
	};
	int bad = 0;
	struct utsname u;
	if (prctl(PR_GET_SECCOMP) != 0) bad |= 1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) bad |= 2;
	if (install(f, sizeof(f) / sizeof(f[0]), 0) != 0) bad |= 4;
	if (!fails_with(syscall(SYS_uname, &u), EPERM)) bad |= 8;
	if (!fails_with(syscall(SYS_getpgrp), EBADFD)) bad |= 16;
	if (syscall(SYS_getppid) != 0) bad |= 32;             /* ERRNO(0): skipped, returns 0 */
	if (!fails_with(syscall(SYS_getsid, 0), 4095)) bad |= 64;
	if (!fails_with(syscall(SYS_getpgid, 0), 64)) bad |= 128;
	if (!fails_with(syscall(SYS_getpriority, PRIO_PROCESS, 0xdead), 0xead)) bad |= 256;
	errno = 0;
	if (syscall(SYS_getpriority, PRIO_PROCESS, 0) == -1 && errno) bad |= 512;
	if (syscall(SYS_getpid) <= 0) bad |= 1024;
	if (prctl(PR_GET_SECCOMP) != 2) bad |= 2048;
	if (bad)
		tap_note("filter_errno: failed bits %#x", bad);
	return bad ? 1 : 0;
}

/* The Seccomp: and Seccomp_filters: lines of /proc/self/status (-1 if absent). */
static void status_seccomp(int *mode, int *nfilters)
{
	char buf[4096];
	*mode = *nfilters = -1;
	int fd = open("/proc/self/status", O_RDONLY);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	char *p = strstr(buf, "\nSeccomp:\t");
	if (p)
		*mode = atoi(p + 10);
	p = strstr(buf, "\nSeccomp_filters:\t");
	if (p)
		*nfilters = atoi(p + 18);
}

static int stacked(void)
{
	struct sock_filter f1[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NR_OFF),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_uname, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOEXEC),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getrusage, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | E2BIG),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_filter f2[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NR_OFF),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_uname, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOENT),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_LOG),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getrusage, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP | 0x42),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	int bad = 0;
	struct utsname u;
	struct rusage ru;
	struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
	sigaction(SIGSYS, &sa, NULL);
	int mode0, n0, mode, n;
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	status_seccomp(&mode0, &n0);
	if (install(f1, 8, 0) != 0 || install(f2, 8, 0) != 0) return 1;
	status_seccomp(&mode, &n);
	if (mode != 2 || n != n0 + 2) {
		tap_note("status: Seccomp %d -> %d, Seccomp_filters %d -> %d", mode0, mode, n0, n);
		bad |= 64;
	}
	if (!fails_with(syscall(SYS_uname, &u), ENOENT)) bad |= 2;      /* equal actions: the newest */
	if (!fails_with(syscall(SYS_getppid), ENOEXEC)) bad |= 4;       /* ERRNO beats LOG */
	long r = syscall(SYS_getrusage, RUSAGE_SELF, &ru);              /* TRAP beats ERRNO */
	if (traps != 1 || r != SYS_getrusage || trap_rax != SYS_getrusage) bad |= 8;
	if (trap_info.si_signo != SIGSYS || trap_info.si_code != 1 /* SYS_SECCOMP */
	    || trap_info.si_errno != 0x42 || trap_info.si_syscall != SYS_getrusage
	    || trap_info.si_arch != AUDIT_ARCH_X86_64 || trap_info.si_call_addr == NULL) bad |= 16;
	/* inherited by a fork child */
	pid_t pid = fork();
	if (pid == 0)
		_exit(fails_with(syscall(SYS_uname, &u), ENOENT) && prctl(PR_GET_SECCOMP) == 2 ? 0 : 1);
	int st;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) bad |= 32;
	if (bad)
		tap_note("stacked: failed bits %#x", bad);
	return bad;
}

static int exec_child(void)
{
	struct utsname u;
	return fails_with(syscall(SYS_uname, &u), ENOENT) && prctl(PR_GET_SECCOMP) == 2 ? 0 : 1;
}

static char *self_path;

static int inherit_exec(void)
{
	struct sock_filter f[] = DENY_ONE(SYS_uname, SECCOMP_RET_ERRNO | ENOENT);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (install(f, 4, 0) != 0) return 2;
	char *args[] = {self_path, EXEC_MARK, NULL};
	execv(self_path, args);
	return 3;
}

static int kill_process(void)
{
	struct sock_filter f[] = DENY_ONE(SYS_getsid, SECCOMP_RET_KILL_PROCESS);
	struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
	sigaction(SIGSYS, &sa, NULL);                     /* a handler does not save it */
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (install(f, 4, 0) != 0) return 2;
	syscall(SYS_getsid, 0);
	return 3;
}

static int kill_thread(void)
{
	struct sock_filter f[] = DENY_ONE(SYS_getsid, SECCOMP_RET_KILL_THREAD);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (install(f, 4, 0) != 0) return 2;
	syscall(SYS_getsid, 0);
	return 3;
}

static int unknown_action(void)
{
	struct sock_filter f[] = DENY_ONE(SYS_getsid, 0x00010000);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (install(f, 4, 0) != 0) return 2;
	syscall(SYS_getsid, 0);
	return 3;
}

static int trap_blocked(void)
{
	struct sock_filter f[] = DENY_ONE(SYS_getsid, SECCOMP_RET_TRAP);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGSYS);
	sigprocmask(SIG_BLOCK, &s, NULL);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (install(f, 4, 0) != 0) return 2;
	syscall(SYS_getsid, 0);
	return 3;
}

static int trace_and_notif(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NR_OFF),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getsid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE | 7),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpgid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (install(f, 6, 0) != 0) return 2;
	int bad = 0;
	if (!fails_with(syscall(SYS_getsid, 0), ENOSYS)) bad |= 4;
	if (!fails_with(syscall(SYS_getpgid, 0), ENOSYS)) bad |= 8;
	return bad;
}

static int strict_mode(void)
{
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0) != 0) return 2;
	if (write(-1, "", 0) != -1) return 3;              /* write is allowed (EBADF) */
	syscall(SYS_getpid);                                /* anything else: SIGKILL */
	return 4;
}

static int pipefd[2];
static volatile int thread_result = -1;

static void *tsync_thread(void *arg)
{
	(void)arg;
	char c;
	struct utsname u;
	if (read(pipefd[0], &c, 1) != 1) return NULL;
	thread_result = fails_with(syscall(SYS_uname, &u), EPERM) ? 0 : 1;
	return NULL;
}

static int tsync(void)
{
	struct sock_filter f[] = DENY_ONE(SYS_uname, SECCOMP_RET_ERRNO | EPERM);
	pthread_t th;
	if (pipe(pipefd) != 0 || pthread_create(&th, NULL, tsync_thread, NULL) != 0) return 2;
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (install(f, 4, SECCOMP_FILTER_FLAG_TSYNC) != 0) return 3;
	if (write(pipefd[1], "x", 1) != 1) return 4;
	pthread_join(th, NULL);
	return thread_result == 0 ? 0 : 5;
}

static int pipe2fd[2];
static volatile pid_t thread_tid;

static void *tsync_own_filter_thread(void *arg)
{
	(void)arg;
	char c;
	struct sock_filter f[] = DENY_ONE(SYS_getsid, SECCOMP_RET_ERRNO | EPERM);
	thread_tid = syscall(SYS_gettid);
	if (install(f, 4, 0) != 0) thread_tid = -1;
	if (write(pipefd[1], "x", 1) != 1 || read(pipe2fd[0], &c, 1) != 1) return NULL;
	return NULL;
}

/* A thread whose filters are not an ancestor of the caller's: TSYNC fails with its tid
 * (or ESRCH with TSYNC_ESRCH), and nothing is installed. */
static int tsync_fail(void)
{
	struct sock_filter f[] = DENY_ONE(SYS_uname, SECCOMP_RET_ERRNO | EPERM);
	pthread_t th;
	char c;
	struct utsname u;
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (pipe(pipefd) != 0 || pipe(pipe2fd) != 0) return 2;
	if (pthread_create(&th, NULL, tsync_own_filter_thread, NULL) != 0) return 3;
	if (read(pipefd[0], &c, 1) != 1 || thread_tid <= 0) return 4;
	int r = install(f, 4, SECCOMP_FILTER_FLAG_TSYNC);
	int r2 = install(f, 4, SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_TSYNC_ESRCH);
	int e2 = errno;
	int ok = r == thread_tid && r2 == -1 && e2 == ESRCH && syscall(SYS_uname, &u) == 0;
	if (write(pipe2fd[1], "x", 1) != 1) return 5;
	pthread_join(th, NULL);
	if (!ok)
		tap_note("tsync_fail: %d (thread %d), %d errno %d", r, thread_tid, r2, e2);
	return ok ? 0 : 6;
}

/* Bad programs and arguments: every result recorded as a bit. */
static int errors(void)
{
	int bad = 0;
	struct sock_filter ok[] = DENY_ONE(SYS_uname, SECCOMP_RET_ERRNO | EPERM);
	struct sock_filter noret[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, NR_OFF)};
	struct sock_filter unaligned[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 2), BPF_STMT(BPF_RET | BPF_K, 0)};
	struct sock_filter past[] = {BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 64), BPF_STMT(BPF_RET | BPF_K, 0)};
	struct sock_filter byte[] = {BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0), BPF_STMT(BPF_RET | BPF_K, 0)};
	struct sock_filter jump[] = {BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, 0), BPF_STMT(BPF_RET | BPF_K, 0)};
	struct sock_filter ja[] = {BPF_JUMP(BPF_JMP | BPF_JA, 1, 0, 0), BPF_STMT(BPF_RET | BPF_K, 0)};
	struct sock_filter mem[] = {BPF_STMT(BPF_LD | BPF_MEM, 2), BPF_STMT(BPF_RET | BPF_K, 0)};
	struct sock_filter div0[] = {BPF_STMT(BPF_ALU | BPF_DIV | BPF_K, 0), BPF_STMT(BPF_RET | BPF_K, 0)};
	struct sock_filter mod[] = {BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, 3), BPF_STMT(BPF_RET | BPF_K, 0)};
	struct sock_filter retx[] = {BPF_STMT(BPF_RET | BPF_X, 0)};
	struct sock_fprog empty = {.len = 0, .filter = ok};
	struct sock_fprog badptr = {.len = 4, .filter = BAD_PTR};
	unsigned action;
	struct seccomp_notif_sizes sizes;

	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	if (!fails_with(install(noret, 1, 0), EINVAL)) bad |= 1 << 0;
	if (!fails_with(install(unaligned, 2, 0), EINVAL)) bad |= 1 << 1;
	if (!fails_with(install(past, 2, 0), EINVAL)) bad |= 1 << 2;
	if (!fails_with(install(byte, 2, 0), EINVAL)) bad |= 1 << 3;
	if (!fails_with(install(jump, 2, 0), EINVAL)) bad |= 1 << 4;
	if (!fails_with(install(ja, 2, 0), EINVAL)) bad |= 1 << 5;
	if (!fails_with(install(mem, 2, 0), EINVAL)) bad |= 1 << 6;
	if (!fails_with(install(div0, 2, 0), EINVAL)) bad |= 1 << 7;
	if (!fails_with(install(mod, 2, 0), EINVAL)) bad |= 1 << 8;
	if (!fails_with(install(retx, 1, 0), EINVAL)) bad |= 1 << 9;
	if (!fails_with(sys_seccomp(SECCOMP_SET_MODE_FILTER, 0, &empty), EINVAL)) bad |= 1 << 10;
	if (!fails_with(sys_seccomp(SECCOMP_SET_MODE_FILTER, 0, &badptr), EFAULT)) bad |= 1 << 11;
	if (!fails_with(sys_seccomp(SECCOMP_SET_MODE_FILTER, 0, BAD_PTR), EFAULT)) bad |= 1 << 12;
	if (!fails_with(install(ok, 4, 0x1000), EINVAL)) bad |= 1 << 13;
	if (!fails_with(sys_seccomp(99, 0, NULL), EINVAL)) bad |= 1 << 14;
	if (!fails_with(sys_seccomp(SECCOMP_SET_MODE_STRICT, 1, NULL), EINVAL)) bad |= 1 << 15;
	if (!fails_with(prctl(PR_SET_SECCOMP, 7, 0, 0, 0), EINVAL)) bad |= 1 << 16;
	action = SECCOMP_RET_KILL_PROCESS;
	if (sys_seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &action) != 0) bad |= 1 << 17;
	action = SECCOMP_RET_USER_NOTIF;
	if (sys_seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &action) != 0) bad |= 1 << 18;
	action = 0x00010000;
	if (!fails_with(sys_seccomp(SECCOMP_GET_ACTION_AVAIL, 0, &action), EOPNOTSUPP)) bad |= 1 << 19;
	if (!fails_with(sys_seccomp(SECCOMP_GET_ACTION_AVAIL, 1, &action), EINVAL)) bad |= 1 << 20;
	if (sys_seccomp(SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0 || sizes.seccomp_data != 64) bad |= 1 << 21;
	if (prctl(PR_GET_SECCOMP) != 0) bad |= 1 << 22;               /* nothing was installed */
	/* a filter mode process cannot go strict */
	if (install(ok, 4, 0) != 0) bad |= 1 << 23;
	if (!fails_with(sys_seccomp(SECCOMP_SET_MODE_STRICT, 0, NULL), EINVAL)) bad |= 1 << 24;
	if (bad)
		tap_note("errors: failed bits %#x", bad);
	return bad ? 1 : 0;
}

static int nonroot_needs_nnp(void)
{
	struct sock_filter ok[] = DENY_ONE(SYS_uname, SECCOMP_RET_ERRNO | EPERM);
	int inherited_nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	if (setgid(65534) != 0 || setuid(65534) != 0) return 2;
	/* A container started with noNewPrivileges (runsc-py's bundles are) has no_new_privs
	 * from the start, and it cannot be cleared: then the filter is allowed. */
	if (inherited_nnp == 1 ? install(ok, 4, 0) != 0 : !fails_with(install(ok, 4, 0), EACCES)) return 3;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 4;
	if (install(ok, 4, 0) != 0) return 5;
	return 0;
}

static int root_without_nnp(void)
{
	struct sock_filter ok[] = DENY_ONE(SYS_uname, SECCOMP_RET_ERRNO | EPERM);
	struct utsname u;
	if (install(ok, 4, 0) != 0) return 2;         /* CAP_SYS_ADMIN suffices */
	return fails_with(syscall(SYS_uname, &u), EPERM) ? 0 : 3;
}

static void killed_by(int st, int sig, const char *what)
{
	check(WIFSIGNALED(st) && WTERMSIG(st) == sig, "%s: killed by signal %d (status %#x)", what, sig, st);
}

static void exited_0(int st, const char *what)
{
	check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s (status %#x)", what, st);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], EXEC_MARK) == 0)
		return exec_child();
	self_path = argv[0];
	tap_plan(13);
	exited_0(in_child(filter_errno), "ERRNO: EPERM, chosen errnos, 0, capped at 4095, from A; args; ALLOW");
	exited_0(in_child(stacked), "stacked filters: lowest action wins, newest among equals; TRAP siginfo; fork inherits; /proc/self/status Seccomp lines");
	exited_0(in_child(inherit_exec), "the filter survives execve");
	killed_by(in_child(kill_process), SIGSYS, "SECCOMP_RET_KILL_PROCESS");
	killed_by(in_child(kill_thread), SIGSYS, "SECCOMP_RET_KILL_THREAD of the only thread");
	killed_by(in_child(unknown_action), SIGSYS, "an unknown action kills the process");
	killed_by(in_child(trap_blocked), SIGSYS, "RET_TRAP with SIGSYS blocked kills");
	exited_0(in_child(trace_and_notif), "RET_TRACE with no tracer and RET_USER_NOTIF with no listener: ENOSYS");
	killed_by(in_child(strict_mode), SIGKILL, "strict mode: write allowed, getpid kills with SIGKILL");
	exited_0(in_child(tsync), "SECCOMP_FILTER_FLAG_TSYNC reaches the other thread");
	exited_0(in_child(tsync_fail), "TSYNC with a thread of other filters: its tid, or ESRCH with TSYNC_ESRCH");
	exited_0(in_child(errors), "bad programs, flags and pointers: EINVAL, EFAULT; GET_ACTION_AVAIL; GET_NOTIF_SIZES");
	int st1 = in_child(nonroot_needs_nnp), st2 = in_child(root_without_nnp);
	tap_note("no_new_privs at start: %d", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	check(WIFEXITED(st1) && WEXITSTATUS(st1) == 0 && WIFEXITED(st2) && WEXITSTATUS(st2) == 0,
	      "non-root without no_new_privs: EACCES; root may (status %#x, %#x)", st1, st2);
	return tap_done();
}
