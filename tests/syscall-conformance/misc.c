/*
 * misc: arch_prctl, set_tid_address, set_robust_list, rt_sigaction,
 * rt_sigprocmask (bookkeeping only: no signal is ever delivered), syscall
 * numbers that do not exist, exit_group.
 *
 * Success paths: ARCH_SET_FS really moves the %fs base (read back through
 * %fs:0 from a fake thread block, then restored; the switch is done with
 * inline syscalls so that libc never runs on the fake TLS), ARCH_SET_GS
 * and ARCH_GET_GS round trip; set_tid_address returns the tid; a handler,
 * flags and mask set with rt_sigaction read back exactly, except that
 * SIGKILL/SIGSTOP are dropped from sa_mask and unknown sa_flags bits are
 * cleared (Linux >= 5.11); rt_sigprocmask SIG_BLOCK/SIG_UNBLOCK/SIG_SETMASK
 * read back, SIGKILL/SIGSTOP silently never blocked, `how` ignored when no
 * set is given.  Errno paths: EINVAL (unknown arch_prctl code, bad robust
 * list size, handlers for SIGKILL/SIGSTOP, signal 0 or 65, sigsetsize != 8,
 * bad `how`), EPERM (non-canonical fs base), EFAULT (bad pointers), ENOSYS
 * (syscall numbers 386 and 400, in the gap x86-64 leaves unassigned below
 * 424, and 1000).  Not 335: since Linux 6.11 that is uretprobe, which
 * raises SIGILL when called outside a uretprobe trampoline.
 * The program ends with a raw exit_group(0 or 1): the harness checks that
 * status.
 */
#include "tap.h"
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>

struct ksigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	unsigned long mask;
};

#define K_SA_RESTORER 0x04000000UL
#define K_SA_UNSUPPORTED 0x00000400UL
#define BIT(sig) (1UL << ((sig) - 1))

struct robust_list { struct robust_list *next; };
struct robust_list_head { struct robust_list list; long futex_offset; struct robust_list *pending; };

static void handler(int sig) { (void)sig; }
static void restorer(void) {}

static long sys_sigaction(int sig, const struct ksigaction *act, struct ksigaction *old, size_t size)
{
	return syscall(SYS_rt_sigaction, sig, act, old, size);
}
static long sys_sigprocmask(int how, const unsigned long *set, unsigned long *old, size_t size)
{
	return syscall(SYS_rt_sigprocmask, how, set, old, size);
}

/* A syscall that touches no libc state (no errno): safe while %fs is foreign. */
static long raw_syscall2(long nr, long a, long b)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "0"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
	return ret;
}

static long read_fs0(void)
{
	long v;

	__asm__ volatile("mov %%fs:0, %0" : "=r"(v));
	return v;
}

int main(void)
{
	static struct robust_list_head head;
	static long fake_tcb[64];
	struct ksigaction act, old;
	unsigned long fs, fs2, gs, set, cur, orig_mask;
	long seen, restored, r;
	int tid;

	tap_plan(63);

	/* arch_prctl */
	check_ok(syscall(SYS_arch_prctl, ARCH_GET_FS, &fs), "ARCH_GET_FS");
	check(fs != 0 && (long)fs == read_fs0(), "the fs base is libc's thread block (it points to itself)");
	fake_tcb[0] = 0x5eed1234;
	r = raw_syscall2(SYS_arch_prctl, ARCH_SET_FS, (long)fake_tcb);
	seen = read_fs0();
	restored = raw_syscall2(SYS_arch_prctl, ARCH_SET_FS, (long)fs);
	check_eq(r, 0, "ARCH_SET_FS to a fake thread block");
	check_eq(seen, 0x5eed1234, "%%fs:0 reads the fake thread block");
	check_eq(restored, 0, "ARCH_SET_FS back to libc's thread block");
	check_ok(syscall(SYS_arch_prctl, ARCH_GET_FS, &fs2), "ARCH_GET_FS again");
	check(fs2 == fs, "the fs base is restored");
	check_ok(syscall(SYS_arch_prctl, ARCH_GET_GS, &gs), "ARCH_GET_GS");
	check_ok(syscall(SYS_arch_prctl, ARCH_SET_GS, 0x12345000UL), "ARCH_SET_GS");
	check_ok(syscall(SYS_arch_prctl, ARCH_GET_GS, &fs2), "ARCH_GET_GS after setting it");
	check_eq(fs2, 0x12345000UL, "ARCH_GET_GS reads back what was set");
	check_ok(syscall(SYS_arch_prctl, ARCH_SET_GS, gs), "ARCH_SET_GS back");
	check_errno(syscall(SYS_arch_prctl, ARCH_SET_FS, 1UL << 63), EPERM, "ARCH_SET_FS to a non-canonical address is EPERM");
	check_errno(syscall(SYS_arch_prctl, ARCH_GET_FS, BAD_PTR), EFAULT, "ARCH_GET_FS into a bad pointer is EFAULT");
	check_errno(syscall(SYS_arch_prctl, 0x9999, 0), EINVAL, "arch_prctl code 0x9999 is EINVAL");

	/* set_tid_address, set_robust_list */
	tid = syscall(SYS_gettid);
	check_eq(syscall(SYS_set_tid_address, &tid), syscall(SYS_gettid), "set_tid_address returns the tid");
	head.list.next = &head.list;
	check_eq(syscall(SYS_set_robust_list, &head, sizeof(head)), 0, "set_robust_list with the right size");
	check_errno(syscall(SYS_set_robust_list, &head, sizeof(head) + 1), EINVAL,
		    "set_robust_list with a wrong size is EINVAL");

	/* rt_sigaction */
	act = (struct ksigaction){ handler, SA_SIGINFO | K_SA_RESTORER | SA_RESTART, restorer,
				   BIT(SIGUSR2) | BIT(SIGKILL) | BIT(SIGSTOP) | BIT(SIGRTMIN + 1) };
	memset(&old, 0xff, sizeof(old));
	check_ok(sys_sigaction(SIGUSR1, &act, &old, 8), "rt_sigaction install a SIGUSR1 handler");
	check(old.handler == SIG_DFL, "the previous SIGUSR1 action was SIG_DFL");
	memset(&old, 0, sizeof(old));
	check_ok(sys_sigaction(SIGUSR1, NULL, &old, 8), "rt_sigaction read SIGUSR1 back");
	check(old.handler == handler && old.restorer == restorer, "handler and restorer read back");
	check_eq(old.flags, SA_SIGINFO | K_SA_RESTORER | SA_RESTART, "flags read back");
	check_eq(old.mask, BIT(SIGUSR2) | BIT(SIGRTMIN + 1), "mask reads back without SIGKILL and SIGSTOP");
	act = (struct ksigaction){ SIG_IGN, K_SA_RESTORER | K_SA_UNSUPPORTED, restorer, 0 };
	check_ok(sys_sigaction(SIGUSR1, &act, &old, 8), "rt_sigaction SIG_IGN with an unknown flag");
	check(old.handler == handler, "the old action is the handler");
	check_ok(sys_sigaction(SIGUSR1, NULL, &old, 8), "rt_sigaction read SIGUSR1 again");
	check(old.handler == SIG_IGN, "SIG_IGN reads back");
	check_eq(old.flags, K_SA_RESTORER, "the unknown flag bit SA_UNSUPPORTED reads back cleared");
	act = (struct ksigaction){ SIG_DFL, K_SA_RESTORER, restorer, 0 };
	check_ok(sys_sigaction(SIGUSR1, &act, NULL, 8), "rt_sigaction back to SIG_DFL");
	check_ok(sys_sigaction(64, &act, NULL, 8), "rt_sigaction of signal 64 (SIGRTMAX)");
	check_ok(sys_sigaction(SIGKILL, NULL, &old, 8), "reading SIGKILL's action is allowed");
	check(old.handler == SIG_DFL, "SIGKILL's action is SIG_DFL");
	act.handler = handler;
	check_errno(sys_sigaction(SIGKILL, &act, NULL, 8), EINVAL, "a SIGKILL handler is EINVAL");
	check_errno(sys_sigaction(SIGSTOP, &act, NULL, 8), EINVAL, "a SIGSTOP handler is EINVAL");
	act.handler = SIG_IGN;
	check_errno(sys_sigaction(SIGKILL, &act, NULL, 8), EINVAL, "ignoring SIGKILL is EINVAL");
	check_errno(sys_sigaction(0, &act, NULL, 8), EINVAL, "rt_sigaction of signal 0 is EINVAL");
	check_errno(sys_sigaction(65, &act, NULL, 8), EINVAL, "rt_sigaction of signal 65 is EINVAL");
	check_errno(sys_sigaction(SIGUSR1, &act, NULL, 4), EINVAL, "rt_sigaction with sigsetsize 4 is EINVAL");
	check_errno(sys_sigaction(SIGUSR1, BAD_PTR, NULL, 8), EFAULT, "rt_sigaction from a bad pointer is EFAULT");
	check_errno(sys_sigaction(SIGUSR1, NULL, BAD_PTR, 8), EFAULT, "rt_sigaction into a bad pointer is EFAULT");
	check_ok(sys_sigaction(SIGUSR1, NULL, &old, 8), "rt_sigaction read SIGUSR1 after the failures");
	check(old.handler == SIG_DFL, "failed rt_sigaction calls changed nothing");

	/* rt_sigprocmask */
	check_ok(sys_sigprocmask(SIG_BLOCK, NULL, &orig_mask, 8), "rt_sigprocmask read the mask");
	check_ok(sys_sigprocmask(99, NULL, &cur, 8), "rt_sigprocmask ignores `how` without a set");
	check_eq(cur, orig_mask, "and reads the same mask");
	set = BIT(SIGUSR1);
	check_ok(sys_sigprocmask(SIG_BLOCK, &set, &cur, 8), "SIG_BLOCK SIGUSR1");
	check_eq(cur, orig_mask, "SIG_BLOCK returns the old mask");
	sys_sigprocmask(SIG_BLOCK, NULL, &cur, 8);
	check_eq(cur, orig_mask | BIT(SIGUSR1), "SIGUSR1 is now blocked");
	set = BIT(SIGUSR2);
	check_ok(sys_sigprocmask(SIG_BLOCK, &set, NULL, 8), "SIG_BLOCK SIGUSR2 too");
	set = BIT(SIGUSR1);
	check_ok(sys_sigprocmask(SIG_UNBLOCK, &set, NULL, 8), "SIG_UNBLOCK SIGUSR1");
	sys_sigprocmask(SIG_BLOCK, NULL, &cur, 8);
	check_eq(cur, (orig_mask | BIT(SIGUSR2)) & ~BIT(SIGUSR1), "only SIGUSR2 is added now");
	set = BIT(SIGTERM) | BIT(SIGKILL) | BIT(SIGSTOP);
	check_ok(sys_sigprocmask(SIG_SETMASK, &set, NULL, 8), "SIG_SETMASK SIGTERM|SIGKILL|SIGSTOP");
	sys_sigprocmask(SIG_BLOCK, NULL, &cur, 8);
	check_eq(cur, BIT(SIGTERM), "SIGKILL and SIGSTOP are never blocked");
	check_errno(sys_sigprocmask(99, &set, NULL, 8), EINVAL, "rt_sigprocmask how 99 is EINVAL");
	check_errno(sys_sigprocmask(SIG_BLOCK, &set, NULL, 4), EINVAL, "rt_sigprocmask sigsetsize 4 is EINVAL");
	check_errno(sys_sigprocmask(SIG_BLOCK, BAD_PTR, NULL, 8), EFAULT, "rt_sigprocmask from a bad pointer is EFAULT");
	check_errno(sys_sigprocmask(SIG_BLOCK, NULL, BAD_PTR, 8), EFAULT, "rt_sigprocmask into a bad pointer is EFAULT");
	sys_sigprocmask(SIG_BLOCK, NULL, &cur, 8);
	check_eq(cur, BIT(SIGTERM), "failed rt_sigprocmask calls changed nothing");
	check_ok(sys_sigprocmask(SIG_SETMASK, &orig_mask, NULL, 8), "restore the original mask");

	/* syscall numbers that do not exist */
	check_errno(syscall(386), ENOSYS, "syscall 386 is ENOSYS");
	check_errno(syscall(400), ENOSYS, "syscall 400 is ENOSYS");
	check_errno(syscall(1000), ENOSYS, "syscall 1000 is ENOSYS");

	syscall(SYS_exit_group, tap_done());
	return 3; /* not reached: exit_group does not return */
}
