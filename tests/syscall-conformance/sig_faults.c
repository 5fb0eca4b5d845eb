/*
 * sig_faults: synchronous faults become signals with the right siginfo.
 *
 * Each fault is taken by an SA_SIGINFO handler that records the siginfo
 * and siglongjmps back.  Checked: a write to an unmapped page is SIGSEGV
 * SEGV_MAPERR with si_addr the faulting address; a write to a read-only
 * page is SIGSEGV SEGV_ACCERR; a read past the end of a file mapping is
 * SIGBUS BUS_ADRERR at that address; an integer division by zero is
 * SIGFPE FPE_INTDIV at the div instruction; ud2 is SIGILL ILL_ILLOPN at
 * the instruction; int3 is SIGTRAP (si_code SI_KERNEL on x86-64); the
 * handler's ucontext holds the faulting rip; a fault while that signal is
 * blocked kills the process anyway (status: killed by SIGSEGV, no core
 * with RLIMIT_CORE 0), and so does a fault with the default action.
 */
#include "tap.h"
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/ucontext.h>
#include <sys/wait.h>

static sigjmp_buf env;
static volatile int got_sig, got_code;
static void *volatile got_addr;
static volatile uintptr_t got_rip;

static void handler(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	got_sig = sig;
	got_code = si->si_code;
	got_addr = si->si_addr;
	got_rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
	siglongjmp(env, 1);
}

extern char ud2_insn[], div_insn[], int3_insn[];

__attribute__((noinline)) static void do_ud2(void) { __asm__ volatile(".globl ud2_insn\nud2_insn: ud2"); }

__attribute__((noinline)) static int do_div(int a, int b)
{
	int q;
	__asm__ volatile(".globl div_insn\n"
			 "cltd\n"
			 "div_insn: idivl %2"
			 : "=a"(q) : "a"(a), "r"(b) : "rdx");
	return q;
}

__attribute__((noinline)) static void do_int3(void) { __asm__ volatile(".globl int3_insn\nint3_insn: int3"); }

static void reset(void) { got_sig = got_code = 0; got_addr = NULL; got_rip = 0; }

int main(void)
{
	struct sigaction sa;
	int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP};

	tap_plan(16);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO;
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);

	/* SIGSEGV */
	{
		volatile char *bad = (volatile char *)0x12345000;
		reset();
		if (!sigsetjmp(env, 1))
			*bad = 1;
		check(got_sig == SIGSEGV && got_code == SEGV_MAPERR, "write to an unmapped page: SIGSEGV SEGV_MAPERR");
		check(got_addr == (void *)bad, "si_addr is the faulting address");
		char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		reset();
		if (!sigsetjmp(env, 1))
			((volatile char *)ro)[123] = 1;
		check(got_sig == SIGSEGV && got_code == SEGV_ACCERR, "write to a read-only page: SIGSEGV SEGV_ACCERR");
		check(got_addr == ro + 123, "si_addr is the faulting address");
		munmap(ro, 4096);
	}
	/* SIGBUS */
	{
		int fd = open("/fixtures/empty", O_RDONLY);
		char *m = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
		check(m != MAP_FAILED, "mmap one page of an empty file");
		reset();
		if (m != MAP_FAILED && !sigsetjmp(env, 1))
			(void)((volatile char *)m)[10];
		check(got_sig == SIGBUS && got_code == BUS_ADRERR, "read past the end of a file mapping: SIGBUS BUS_ADRERR");
		check(m != MAP_FAILED && got_addr == m + 10, "si_addr is the faulting address");
		if (got_sig != SIGBUS)
			tap_note("got signal %d code %d", got_sig, got_code);
		close(fd);
	}
	/* SIGFPE */
	{
		volatile int zero = 0;
		reset();
		if (!sigsetjmp(env, 1))
			do_div(1, zero);
		check(got_sig == SIGFPE && got_code == FPE_INTDIV, "integer division by zero: SIGFPE FPE_INTDIV");
		check(got_addr == (void *)div_insn && got_rip == (uintptr_t)div_insn,
		      "si_addr and the ucontext rip are the div instruction");
	}
	/* SIGILL */
	reset();
	if (!sigsetjmp(env, 1))
		do_ud2();
	check(got_sig == SIGILL && got_code == ILL_ILLOPN, "ud2: SIGILL ILL_ILLOPN");
	check(got_addr == (void *)ud2_insn && got_rip == (uintptr_t)ud2_insn, "si_addr and rip are the ud2 instruction");
	/* SIGTRAP */
	reset();
	if (!sigsetjmp(env, 1))
		do_int3();
	check(got_sig == SIGTRAP && got_code == SI_KERNEL, "int3: SIGTRAP, si_code SI_KERNEL");
	check(got_rip == (uintptr_t)int3_insn + 1, "rip is just past the int3");

	/* faults that kill */
	{
		int st;
		pid_t pid = fork();
		if (pid == 0) {
			struct rlimit rl = {0, 0};
			sigset_t s;
			setrlimit(RLIMIT_CORE, &rl);
			sigemptyset(&s);
			sigaddset(&s, SIGSEGV);
			sigprocmask(SIG_BLOCK, &s, NULL);
			*(volatile char *)0x12345000 = 1;
			_exit(0);
		}
		waitpid(pid, &st, 0);
		check_eq(st, SIGSEGV, "a fault with SIGSEGV blocked kills the process anyway (status 11)");
		pid = fork();
		if (pid == 0) {
			struct rlimit rl = {0, 0};
			setrlimit(RLIMIT_CORE, &rl);
			signal(SIGFPE, SIG_DFL);
			volatile int zero = 0;
			do_div(1, zero);
			_exit(0);
		}
		waitpid(pid, &st, 0);
		check_eq(st, SIGFPE, "a division by zero with the default action: killed by SIGFPE (status 8)");
		pid = fork();
		if (pid == 0) {
			struct rlimit rl = {0, 0};
			setrlimit(RLIMIT_CORE, &rl);
			signal(SIGSEGV, SIG_IGN);
			*(volatile char *)0x12345000 = 1;
			_exit(0);
		}
		waitpid(pid, &st, 0);
		check_eq(st, SIGSEGV, "a fault with SIGSEGV ignored kills the process anyway");
	}
	return tap_done();
}
