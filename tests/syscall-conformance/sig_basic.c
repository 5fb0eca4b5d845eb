/*
 * sig_basic: signal delivery and the signal syscalls.
 *
 * Success paths: a handler runs for raise/kill/tkill/tgkill with the right
 * signal number; SA_SIGINFO handlers get si_signo, si_code (SI_USER,
 * SI_TKILL, SI_QUEUE) si_pid, si_uid and the sigqueue value; the signal is
 * blocked inside its handler unless SA_NODEFER (nesting depth 2), and so
 * is sa_mask; SA_RESETHAND runs the handler once then resets to SIG_DFL;
 * sigaltstack set/get and SA_ONSTACK runs the handler on the alternate
 * stack (and ss_flags reads SS_ONSTACK there); a blocked signal is pending
 * (rt_sigpending) and delivered when unblocked; standard signals coalesce,
 * real-time signals queue, lowest first; rt_sigsuspend returns EINTR
 * after a handler and restores the mask; rt_sigtimedwait takes a pending
 * signal with its siginfo and times out with EAGAIN; the handler may
 * change registers the interrupted code sees (rt_sigreturn restores the
 * rest: a callee-saved value survives the handler); SIG_IGN discards.
 * Errno paths: EINVAL (kill/tgkill with signal 65, tgkill with tgid 0,
 * rt_sigqueueinfo with a bad si_code forging SI_USER... as EPERM,
 * sigaltstack with bad flags, too small a stack: ENOMEM), ESRCH (kill,
 * tkill, tgkill of a missing pid/tid, tgkill with the wrong tgid), EPERM
 * (sigaltstack change while on it), kill(pid, 0) as an existence check.
 */
#include "tap.h"
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

static volatile int hits, depth, maxdepth, last_sig;
static volatile int last_code, last_pid, last_uid, last_val;
static volatile int mask_had_usr2, raised;
static volatile uintptr_t handler_sp;
static volatile int handler_onstack;

static void h_simple(int sig) { last_sig = sig; hits++; }

static void h_info(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	last_sig = sig;
	last_code = si->si_code;
	last_pid = si->si_pid;
	last_uid = si->si_uid;
	last_val = si->si_value.sival_int;
	hits++;
}

static void h_nest(int sig)
{
	sigset_t cur;
	depth++;
	if (depth > maxdepth)
		maxdepth = depth;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	mask_had_usr2 = sigismember(&cur, SIGUSR2);
	if (!raised) {
		raised = 1;
		raise(sig);          /* nested only with SA_NODEFER */
	}
	depth--;
	hits++;
}

static void h_stack(int sig)
{
	stack_t ss;
	int local;
	(void)sig;
	handler_sp = (uintptr_t)&local;
	if (sigaltstack(NULL, &ss) == 0)
		handler_onstack = (ss.ss_flags & SS_ONSTACK) != 0;
	hits++;
}

static volatile int order[4], norder;
static void h_order(int sig) { if (norder < 4) order[norder++] = sig; }

static void set(int sig, void (*fn)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sa.sa_flags = flags;
	sigaction(sig, &sa, NULL);
}

static void set_info(int sig)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = h_info;
	sa.sa_flags = SA_SIGINFO;
	sigaction(sig, &sa, NULL);
}

int main(void)
{
	pid_t me = getpid(), tid = (pid_t)syscall(SYS_gettid);
	sigset_t s, old, pend;
	struct sigaction sa;
	siginfo_t si;
	struct timespec zero = {0, 0}, short_ts = {0, 20000000};

	tap_plan(52);

	/* --- plain delivery --- */
	set(SIGUSR1, h_simple, 0);
	hits = 0;
	check_eq(raise(SIGUSR1), 0, "raise(SIGUSR1)");
	check(hits == 1 && last_sig == SIGUSR1, "the handler ran once with SIGUSR1");
	check_eq(kill(me, SIGUSR1), 0, "kill(getpid(), SIGUSR1)");
	check_eq(syscall(SYS_tkill, tid, SIGUSR1), 0, "tkill(gettid(), SIGUSR1)");
	check_eq(syscall(SYS_tgkill, me, tid, SIGUSR1), 0, "tgkill(getpid(), gettid(), SIGUSR1)");
	check_eq(hits, 4, "each of kill/tkill/tgkill ran the handler");
	check_eq(kill(me, 0), 0, "kill(getpid(), 0) checks existence");

	/* --- siginfo --- */
	set_info(SIGUSR2);
	kill(me, SIGUSR2);
	check(last_code == SI_USER && last_pid == me && last_uid == (int)getuid(),
	      "kill: si_code SI_USER, si_pid, si_uid");
	syscall(SYS_tgkill, me, tid, SIGUSR2);
	check(last_code == SI_TKILL && last_pid == me, "tgkill: si_code SI_TKILL, si_pid");
	memset(&si, 0, sizeof(si));
	si.si_signo = SIGUSR2;
	si.si_code = SI_QUEUE;
	si.si_pid = me;
	si.si_uid = getuid();
	si.si_value.sival_int = 1234;
	check_eq(syscall(SYS_rt_sigqueueinfo, me, SIGUSR2, &si), 0, "rt_sigqueueinfo SI_QUEUE to self");
	check(last_code == SI_QUEUE && last_val == 1234, "the handler got SI_QUEUE and the value 1234");
	{
		pid_t child = fork();
		if (child == 0) {
			for (;;)
				pause();
		}
		si.si_code = SI_USER;
		check_errno(syscall(SYS_rt_sigqueueinfo, child, SIGUSR2, &si), EPERM,
			    "rt_sigqueueinfo forging SI_USER to another process is EPERM");
		si.si_code = SI_KERNEL;
		check_errno(syscall(SYS_rt_sigqueueinfo, child, SIGUSR2, &si), EPERM,
			    "rt_sigqueueinfo forging SI_KERNEL to another process is EPERM");
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}

	/* --- masking inside handlers, SA_NODEFER, sa_mask --- */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = h_nest;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	sigaction(SIGUSR1, &sa, NULL);
	hits = maxdepth = depth = raised = 0;
	raise(SIGUSR1);
	check(maxdepth == 1 && hits == 2, "without SA_NODEFER the re-raise waits until the handler returns");
	check(mask_had_usr2, "sa_mask is blocked inside the handler");
	sigprocmask(SIG_BLOCK, NULL, &old);
	check(!sigismember(&old, SIGUSR1) && !sigismember(&old, SIGUSR2), "the mask is restored after the handler");
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGUSR1, &sa, NULL);
	hits = maxdepth = depth = raised = 0;
	raise(SIGUSR1);
	check(maxdepth == 2 && hits == 2, "with SA_NODEFER the handler nests");

	/* --- SA_RESETHAND --- */
	set(SIGUSR1, h_simple, SA_RESETHAND);
	hits = 0;
	raise(SIGUSR1);
	sigaction(SIGUSR1, NULL, &sa);
	check(hits == 1 && sa.sa_handler == SIG_DFL, "SA_RESETHAND: handler ran, disposition is SIG_DFL again");

	/* --- SIG_IGN --- */
	set(SIGUSR1, SIG_IGN, 0);
	check_eq(raise(SIGUSR1), 0, "raise of an ignored signal is harmless");
	sigpending(&pend);
	check(!sigismember(&pend, SIGUSR1), "an ignored signal is discarded, not pending");

	/* --- pending, unblock --- */
	set(SIGUSR1, h_simple, 0);
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigprocmask(SIG_BLOCK, &s, &old);
	hits = 0;
	raise(SIGUSR1);
	raise(SIGUSR1);
	sigemptyset(&pend);
	check_eq(syscall(SYS_rt_sigpending, &pend, 8), 0, "rt_sigpending");
	check(sigismember(&pend, SIGUSR1) && hits == 0, "a blocked signal is pending, not delivered");
	sigprocmask(SIG_SETMASK, &old, NULL);
	check_eq(hits, 1, "unblocking delivers it once (standard signals coalesce)");
	check_errno(syscall(SYS_rt_sigpending, &pend, 16), EINVAL, "rt_sigpending with sigsetsize 16 is EINVAL");
	check_errno(syscall(SYS_rt_sigpending, BAD_PTR, 8), EFAULT, "rt_sigpending to a bad pointer is EFAULT");

	/* --- real-time signals queue, lowest number first --- */
	set(SIGRTMIN + 2, h_order, 0);
	set(SIGRTMIN + 1, h_order, 0);
	sigemptyset(&s);
	sigaddset(&s, SIGRTMIN + 1);
	sigaddset(&s, SIGRTMIN + 2);
	sigprocmask(SIG_BLOCK, &s, &old);
	norder = 0;
	raise(SIGRTMIN + 2);
	raise(SIGRTMIN + 1);
	raise(SIGRTMIN + 2);
	sigprocmask(SIG_SETMASK, &old, NULL);
	check(norder == 3 && (order[0] == SIGRTMIN + 1) + (order[1] == SIGRTMIN + 1) + (order[2] == SIGRTMIN + 1) == 1,
	      "real-time signals queue: 2 x RTMIN+2 and 1 x RTMIN+1 delivered");
	sigprocmask(SIG_BLOCK, &s, &old);
	raise(SIGRTMIN + 2);
	raise(SIGRTMIN + 1);
	check(sigtimedwait(&s, NULL, &zero) == SIGRTMIN + 1 && sigtimedwait(&s, NULL, &zero) == SIGRTMIN + 2,
	      "sigtimedwait takes the lowest pending real-time signal first");
	sigprocmask(SIG_SETMASK, &old, NULL);
	tap_note("rt order: n=%d %d %d %d (SIGRTMIN=%d)", norder, order[0], order[1], order[2], SIGRTMIN);

	/* --- sigsuspend --- */
	set(SIGUSR1, h_simple, 0);
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigprocmask(SIG_BLOCK, &s, &old);
	raise(SIGUSR1);
	hits = 0;
	{
		sigset_t wait_mask;
		sigemptyset(&wait_mask);
		check_errno(syscall(SYS_rt_sigsuspend, &wait_mask, 8), EINTR, "rt_sigsuspend returns EINTR after the handler");
	}
	check_eq(hits, 1, "the pending signal was delivered inside sigsuspend");
	sigprocmask(SIG_BLOCK, NULL, &pend);
	check(sigismember(&pend, SIGUSR1), "sigsuspend restored the blocking mask");
	sigprocmask(SIG_SETMASK, &old, NULL);

	/* --- sigtimedwait --- */
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	sigprocmask(SIG_BLOCK, &s, &old);
	kill(me, SIGUSR2);
	memset(&si, 0, sizeof(si));
	check_eq(syscall(SYS_rt_sigtimedwait, &s, &si, &zero, 8), SIGUSR2, "rt_sigtimedwait takes a pending SIGUSR2");
	check(si.si_signo == SIGUSR2 && si.si_code == SI_USER && si.si_pid == me, "with its siginfo (SI_USER, si_pid)");
	check_errno(syscall(SYS_rt_sigtimedwait, &s, &si, &zero, 8), EAGAIN, "nothing pending, zero timeout: EAGAIN");
	check_errno(syscall(SYS_rt_sigtimedwait, &s, &si, &short_ts, 8), EAGAIN, "nothing pending, 20 ms timeout: EAGAIN");
	{
		struct timespec bad = {0, 1000000000L};
		check_errno(syscall(SYS_rt_sigtimedwait, &s, &si, &bad, 8), EINVAL, "tv_nsec 1e9 is EINVAL");
	}
	sigprocmask(SIG_SETMASK, &old, NULL);

	/* --- sigaltstack, SA_ONSTACK --- */
	{
		static char altstack[65536];
		stack_t ss, oss;
		memset(&oss, 0, sizeof(oss));
		check_eq(sigaltstack(NULL, &oss), 0, "sigaltstack query");
		check(oss.ss_flags == SS_DISABLE, "no alternate stack at first (SS_DISABLE)");
		ss.ss_sp = altstack;
		ss.ss_size = sizeof(altstack);
		ss.ss_flags = 0;
		check_eq(sigaltstack(&ss, NULL), 0, "sigaltstack set 64 KiB");
		sigaltstack(NULL, &oss);
		check(oss.ss_sp == altstack && oss.ss_size == sizeof(altstack) && oss.ss_flags == 0, "and it reads back");
		set(SIGUSR1, h_stack, SA_ONSTACK);
		hits = 0;
		raise(SIGUSR1);
		check(hits == 1 && handler_sp >= (uintptr_t)altstack && handler_sp < (uintptr_t)altstack + sizeof(altstack),
		      "an SA_ONSTACK handler runs on the alternate stack");
		check(handler_onstack, "sigaltstack reads SS_ONSTACK inside it");
		set(SIGUSR1, h_stack, 0);
		raise(SIGUSR1);
		check(handler_sp < (uintptr_t)altstack || handler_sp >= (uintptr_t)altstack + sizeof(altstack),
		      "without SA_ONSTACK it runs on the normal stack");
		ss.ss_flags = 0x1234;
		check_errno(sigaltstack(&ss, NULL), EINVAL, "sigaltstack with bad flags is EINVAL");
		ss.ss_flags = 0;
		ss.ss_size = 1024;
		check_errno(sigaltstack(&ss, NULL), ENOMEM, "sigaltstack smaller than MINSIGSTKSZ is ENOMEM");
		ss.ss_flags = SS_DISABLE;
		check_eq(sigaltstack(&ss, NULL), 0, "sigaltstack SS_DISABLE");
	}

	/* --- errno paths of kill/tkill/tgkill --- */
	check_errno(kill(me, 65), EINVAL, "kill with signal 65 is EINVAL");
	check_errno(kill(0x3ffffff0, SIGUSR1), ESRCH, "kill of a missing pid is ESRCH");
	check_errno(syscall(SYS_tkill, 0x3ffffff0, SIGUSR1), ESRCH, "tkill of a missing tid is ESRCH");
	check_errno(syscall(SYS_tkill, 0, SIGUSR1), EINVAL, "tkill of tid 0 is EINVAL");
	check_errno(syscall(SYS_tgkill, 0, tid, SIGUSR1), EINVAL, "tgkill with tgid 0 is EINVAL");
	check_errno(syscall(SYS_tgkill, me, tid, 65), EINVAL, "tgkill with signal 65 is EINVAL");
	check_errno(syscall(SYS_tgkill, me + 0x1000000, tid, SIGUSR1), ESRCH, "tgkill with the wrong tgid is ESRCH");
	return tap_done();
}
