/*
 * robust_sigstack: a signal that cannot be delivered kills only its process, with SIGSEGV.
 *
 * Linux builds a signal frame below the stack pointer (or on the alternate stack); when that
 * memory is not writable it calls force_sigsegv(): the process dies with SIGSEGV (status 11,
 * no core file: RLIMIT_CORE is 0), whatever handler it had.  rt_sigreturn from a frame it
 * cannot read does the same.  Each case runs in a child and is judged from the parent with
 * waitpid, so a sandbox that died with the child would fail every check after it.
 *
 * Cases: rsp = 0 with a SIGILL handler (`mov $0,%rsp; ud2`, issue 11), rsp in the kernel half,
 * rsp at the top of a read-only mapping, a SIGSEGV handler whose own frame cannot be written
 * (the handler is reset and the process dies), an alternate stack whose end wraps past 2^64,
 * rt_sigreturn with rsp = 0, with an unreadable fpstate pointer and with reserved MXCSR bits
 * (and the same hand-built frame with a good FPU image, which resumes), and a sibling process
 * that keeps running through all of it.
 */
#include "tap.h"

#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>

static void handler(int sig)
{
	(void)sig;
	_exit(42);               /* never reached: the frame cannot be built */
}

static void install(int sig, int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigaction(sig, &sa, NULL);
}

/* Run fn in a child; return its wait status. */
static int in_child(void (*fn)(void))
{
	int st = -1;
	pid_t pid = fork();

	if (pid == 0) {
		struct rlimit rl = {0, 0};

		setrlimit(RLIMIT_CORE, &rl);
		fn();
		_exit(99);
	}
	if (pid < 0)
		return -1;
	waitpid(pid, &st, 0);
	return st;
}

static void rsp_zero_sigill(void)
{
	install(SIGILL, 0);
	__asm__ volatile("mov $0, %rsp\n\tud2");
}

static void rsp_kernel_half_sigill(void)
{
	install(SIGILL, 0);
	__asm__ volatile("movabs $0xffff800000001000, %%rax\n\tmov %%rax, %%rsp\n\tud2" ::: "rax");
}

static void *ro_page;

static void rsp_read_only_sigill(void)
{
	install(SIGILL, 0);
	__asm__ volatile("mov %0, %%rsp\n\tud2" :: "r"((char *)ro_page + 4096));
}

static void segv_handler_unwritable_stack(void)
{
	install(SIGSEGV, 0);
	/* The store faults (SIGSEGV), and the handler's frame cannot be written either. */
	__asm__ volatile("mov $16, %rsp\n\tmovq $0, (%rsp)\n\tud2");
}

static void altstack_wraps(void)
{
	stack_t ss;

	ss.ss_sp = (void *)(uintptr_t)-4096;      /* sp + size wraps to 4096: nothing mapped there */
	ss.ss_size = 8192;
	ss.ss_flags = 0;
	if (sigaltstack(&ss, NULL) != 0)
		_exit(98);
	install(SIGUSR1, SA_ONSTACK);
	raise(SIGUSR1);
}

static void sigreturn_rsp_zero(void)
{
	/* rt_sigreturn reads its frame at rsp - 8: unreadable, so SIGSEGV (and not the ud2's SIGILL). */
	__asm__ volatile("mov $0, %rsp\n\tmov $15, %eax\n\tsyscall\n\tud2");
}

static void exit_7(void)
{
	_exit(7);
}

static void sigreturn_frame(uint64_t fpstate)
{
	/* A frame as rt_sigreturn reads it: pretcode, ucontext (flags, link, stack_t, sigcontext...).
	 * Everything is sane except the fpstate pointer, which points at an unmapped page. */
	static uint64_t frame[64] __attribute__((aligned(16)));
	uint64_t *uc = frame + 1;
	uint64_t *sc = uc + 5;             /* uc_flags, uc_link, ss_sp, ss_flags+pad, ss_size */
	static char stack[16384] __attribute__((aligned(16)));

	memset(frame, 0, sizeof(frame));
	uc[3] = 2;                         /* SS_DISABLE */
	sc[15] = (uint64_t)(uintptr_t)(stack + sizeof(stack) - 8);   /* rsp */
	sc[16] = (uint64_t)(uintptr_t)exit_7;                        /* rip */
	sc[17] = 0x202;                    /* eflags */
	sc[18] = 0x33 | (0x2bULL << 48);   /* cs, gs, fs, ss */
	sc[23] = fpstate;
	__asm__ volatile("mov %0, %%rsp\n\tmov $15, %%eax\n\tsyscall\n\tud2" :: "r"(frame + 1) : "rax");
}

static void sigreturn_bad_fpstate(void)
{
	sigreturn_frame(0x1000);           /* unmapped */
}

static void sigreturn_bad_mxcsr(void)
{
	static uint8_t fx[512] __attribute__((aligned(64)));

	__asm__ volatile("fxsave %0" : "=m"(fx));
	memset(fx + 24, 0xff, 4);          /* MXCSR with its reserved bits set: fxrstor would #GP */
	sigreturn_frame((uint64_t)(uintptr_t)fx);
}

static void sigreturn_good_frame(void)
{
	static uint8_t fx[512] __attribute__((aligned(64)));

	__asm__ volatile("fxsave %0" : "=m"(fx));
	sigreturn_frame((uint64_t)(uintptr_t)fx);   /* the control: restored, runs exit_7 */
}

int main(void)
{
	int st, pipefd[2];
	pid_t sibling;
	char c;

	tap_plan(11);
	ro_page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	/* A sibling that outlives every crash below, and answers at the end. */
	if (pipe(pipefd) != 0)
		return 1;
	sibling = fork();
	if (sibling == 0) {
		close(pipefd[1]);
		_exit(read(pipefd[0], &c, 1) == 1 && c == 'x' ? 0 : 1);
	}
	close(pipefd[0]);

	st = in_child(rsp_zero_sigill);
	check_eq(st, SIGSEGV, "rsp = 0, SIGILL handler: the process dies with SIGSEGV (force_sigsegv)");
	st = in_child(rsp_kernel_half_sigill);
	check_eq(st, SIGSEGV, "rsp in the kernel half, SIGILL handler: SIGSEGV");
	st = in_child(rsp_read_only_sigill);
	check_eq(st, SIGSEGV, "rsp at the top of a read-only page, SIGILL handler: SIGSEGV");
	st = in_child(segv_handler_unwritable_stack);
	check_eq(st, SIGSEGV, "SIGSEGV handler with an unwritable stack: SIGSEGV kills");
	st = in_child(altstack_wraps);
	check_eq(st, SIGSEGV, "an alternate stack whose end wraps past 2^64: SIGSEGV");
	st = in_child(sigreturn_rsp_zero);
	check_eq(st, SIGSEGV, "rt_sigreturn with rsp = 0: SIGSEGV");
	st = in_child(sigreturn_bad_fpstate);
	check_eq(st, SIGSEGV, "rt_sigreturn with an unreadable fpstate: SIGSEGV");
	st = in_child(sigreturn_bad_mxcsr);
	check_eq(st, SIGSEGV, "rt_sigreturn with reserved MXCSR bits: SIGSEGV");
	st = in_child(sigreturn_good_frame);
	check_eq(st, 7 << 8, "rt_sigreturn of the same frame with a good FPU image resumes at its rip");

	/* The rest of the sandbox is unharmed. */
	check_eq(write(pipefd[1], "x", 1), 1, "the sibling process is still there to read");
	waitpid(sibling, &st, 0);
	check_eq(st, 0, "the sibling exits normally");
	return tap_done();
}
