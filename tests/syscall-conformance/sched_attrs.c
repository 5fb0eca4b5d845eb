/*
 * sched_attrs: what a process can set about its own scheduling and read back
 * -- sched_setscheduler/getscheduler/setparam/getparam/rr_get_interval,
 * ioprio_set/get, personality, membarrier, mlock/munlock/mlock2/mlockall/
 * munlockall with RLIMIT_MEMLOCK accounting, and sethostname/setdomainname's
 * checks.
 *
 * Privileged paths run as root (the program's user, natively and in the
 * sandbox); the unprivileged ones in a child that became nobody (65534).
 * sethostname is only called with the current name or a bad length, so the
 * native run changes nothing.  Values that depend on the machine (the RR slice
 * of a fair-class task) are not asserted.
 */
#include "tap.h"
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>

#define IOPRIO_PRIO_VALUE(c, d) (((c) << 13) | (d))

static long memb(int cmd, int flags) { return syscall(SYS_membarrier, cmd, flags, 0); }

/* The unprivileged checks, as nobody; returns a bit per failed check (0: all passed). */
static int as_nobody(void)
{
	struct sched_param sp = {1};
	struct rlimit rl = {16 * 4096, 16 * 4096};
	char *p;
	int bad = 0;

	if (setgid(65534) || setuid(65534))
		return 1 << 30;
	if (sched_setscheduler(0, SCHED_FIFO, &sp) != -1 || errno != EPERM)
		bad |= 1;
	if (syscall(SYS_ioprio_set, 1, 0, IOPRIO_PRIO_VALUE(1, 0)) != -1 || errno != EPERM)
		bad |= 2;
	if (syscall(SYS_sethostname, "x", 1) != -1 || errno != EPERM)
		bad |= 4;
	if (syscall(SYS_setdomainname, "x", 1) != -1 || errno != EPERM)
		bad |= 8;
	if (setrlimit(RLIMIT_MEMLOCK, &rl))
		bad |= 16;
	p = mmap(NULL, 32 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mlock(p, 16 * 4096))
		bad |= 32;
	if (mlock(p + 16 * 4096, 4096) != -1 || errno != ENOMEM)
		bad |= 64;                       /* 17 pages > RLIMIT_MEMLOCK */
	if (mlock(p, 8 * 4096))
		bad |= 128;                      /* already locked: not charged twice */
	if (munlock(p, 4096) || mlock(p + 16 * 4096, 4096))
		bad |= 256;                      /* unlocking one page makes room for another */
	if (munlock(p, 32 * 4096) || syscall(SYS_mlock2, p, 16 * 4096, 1))
		bad |= 512;
	if (mlockall(MCL_CURRENT) != -1 || errno != ENOMEM)
		bad |= 1024;                     /* everything mapped is more than 64 KiB */
	munlockall();
	rl.rlim_cur = 0;
	setrlimit(RLIMIT_MEMLOCK, &rl);
	if (mlock(p, 4096) != -1 || errno != EPERM)
		bad |= 2048;                     /* a zero limit without CAP_IPC_LOCK */
	return bad;
}

int main(void)
{
	struct sched_param sp;
	struct timespec ts;
	struct utsname u;
	char page[4096] __attribute__((aligned(4096)));
	long q;
	int st;
	pid_t pid;

	tap_plan(43);
	check_eq(sched_getscheduler(0), SCHED_OTHER, "a process starts SCHED_OTHER");
	sp.sched_priority = 5;
	check_errno(sched_setscheduler(0, SCHED_OTHER, &sp), EINVAL, "SCHED_OTHER with priority 5: EINVAL");
	sp.sched_priority = 100;
	check_errno(sched_setscheduler(0, SCHED_RR, &sp), EINVAL, "SCHED_RR priority 100: EINVAL");
	check_errno(sched_setscheduler(0, 77, &sp), EINVAL, "unknown policy: EINVAL");
	check_errno(sched_setscheduler(-1, SCHED_OTHER, &sp), EINVAL, "negative pid: EINVAL");
	check_errno(syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, NULL), EINVAL, "NULL param: EINVAL");
	sp.sched_priority = 0;
	check_errno(sched_setscheduler(999999, SCHED_OTHER, &sp), ESRCH, "unknown pid: ESRCH");
	sp.sched_priority = 3;
	check_ok(sched_setscheduler(0, SCHED_RR, &sp), "root sets SCHED_RR 3");
	check_eq(sched_getscheduler(0), SCHED_RR, "getscheduler says SCHED_RR");
	sp.sched_priority = 0;
	check_ok(sched_getparam(0, &sp), "getparam");
	check_eq(sp.sched_priority, 3, "priority 3");
	check_ok(sched_rr_get_interval(0, &ts), "rr_get_interval");
	check_eq(ts.tv_sec * 1000000000L + ts.tv_nsec, 100000000L, "the RR slice is 100 ms");
	sp.sched_priority = 7;
	check_ok(sched_setparam(0, &sp), "setparam 7");
	sp.sched_priority = 0;
	sched_getparam(0, &sp);
	check_eq(sp.sched_priority, 7, "priority 7");
	sp.sched_priority = 0;
	check_ok(sched_setscheduler(0, SCHED_BATCH | SCHED_RESET_ON_FORK, &sp), "SCHED_BATCH with RESET_ON_FORK");
	check_eq(sched_getscheduler(0), SCHED_BATCH | SCHED_RESET_ON_FORK, "getscheduler reports the flag");
	pid = fork();
	if (pid == 0)
		_exit(sched_getscheduler(0) == SCHED_BATCH ? 0 : 1);
	waitpid(pid, &st, 0);
	check_eq(st, 0, "a child inherits BATCH without RESET_ON_FORK");
	check_ok(sched_setscheduler(0, SCHED_OTHER, &sp), "back to SCHED_OTHER");
	check_eq(sched_get_priority_max(SCHED_FIFO), 99, "priority max FIFO");
	check_errno(sched_get_priority_min(42), EINVAL, "priority min of an unknown policy");

	check_eq(syscall(SYS_ioprio_get, 1, 0), 0, "ioprio starts at IOPRIO_DEFAULT (0)");
	check_ok(syscall(SYS_ioprio_set, 1, 0, IOPRIO_PRIO_VALUE(2, 4)), "ioprio_set BE 4");
	check_eq(syscall(SYS_ioprio_get, 1, 0), IOPRIO_PRIO_VALUE(2, 4), "ioprio_get BE 4");
	check_errno(syscall(SYS_ioprio_set, 1, 0, IOPRIO_PRIO_VALUE(0, 1)), EINVAL, "class NONE with a level: EINVAL");
	check_errno(syscall(SYS_ioprio_set, 1, 0, IOPRIO_PRIO_VALUE(5, 0)), EINVAL, "class 5: EINVAL");
	check_errno(syscall(SYS_ioprio_get, 9, 0), EINVAL, "which 9: EINVAL");
	check_errno(syscall(SYS_ioprio_get, 1, 999999), ESRCH, "unknown pid: ESRCH");

	q = syscall(SYS_personality, 0xffffffffUL);
	check_eq(q, 0, "personality is PER_LINUX");
	check_eq(syscall(SYS_personality, 0x0040000UL), 0, "set ADDR_NO_RANDOMIZE returns the old persona");
	check_eq(syscall(SYS_personality, 0xffffffffUL), 0x0040000, "query returns it");
	syscall(SYS_personality, 0UL);

	q = memb(0, 0);
	check_eq(q & 0x7f, 0x7f, "membarrier QUERY lists GLOBAL and the expedited commands");
	check_errno(memb(8, 0), EPERM, "PRIVATE_EXPEDITED unregistered: EPERM");
	check_ok(memb(16, 0), "REGISTER_PRIVATE_EXPEDITED");
	check_ok(memb(8, 0), "PRIVATE_EXPEDITED");
	check_errno(memb(8, 1), EINVAL, "flags: EINVAL");
	check_errno(memb(1 << 20, 0), EINVAL, "unknown command: EINVAL");

	check_ok(mlock(page, sizeof page), "root mlocks a page");
	check_ok(munlock(page, sizeof page), "munlock it");
	check_errno(mlockall(0), EINVAL, "mlockall(0): EINVAL");

	uname(&u);
	check_errno(syscall(SYS_sethostname, u.nodename, 65), EINVAL, "sethostname of 65 bytes: EINVAL");
	check_ok(syscall(SYS_sethostname, u.nodename, strlen(u.nodename)), "root sets the hostname (to itself)");
	pid = fork();
	if (pid == 0)
		_exit(as_nobody());
	waitpid(pid, &st, 0);
	check_eq(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0, "nobody: RT policy, RT ioprio, set*name EPERM; mlock within RLIMIT_MEMLOCK");
	return tap_done();
}
