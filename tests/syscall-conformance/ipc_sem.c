/*
 * ipc_sem.c - System V semaphores: semget semop semtimedop semctl, SEM_UNDO at process exit,
 * /proc/sysvipc/sem, and their IPC namespace.
 *
 * The program first enters a new IPC namespace (unshare(CLONE_NEWIPC), as root): natively and
 * in the sandbox it starts empty, with Linux's default limits.  Blocking cases fork a child
 * that parks in semop; the parent knows it is parked from GETNCNT/GETZCNT (no timing), then
 * wakes it (an increment, SETVAL, IPC_RMID, a signal) and reads its exit code.
 */
#include "tap.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <time.h>

#ifndef SEM_STAT_ANY
#define SEM_STAT_ANY 20
#endif

static const key_t KEY = 0x5a5a0002;

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
	struct seminfo *__buf;
};

static long sctl(int id, int num, int cmd, long arg)
{
	return syscall(SYS_semctl, id, num, cmd, arg);
}

static long op1(int id, int num, int op, int flg)
{
	struct sembuf sb = {(unsigned short)num, (short)op, (short)flg};
	return syscall(SYS_semop, id, &sb, 1);
}

static long op2(int id, int n1, int o1, int f1, int n2, int o2, int f2)
{
	struct sembuf sb[2] = {{(unsigned short)n1, (short)o1, (short)f1}, {(unsigned short)n2, (short)o2, (short)f2}};
	return syscall(SYS_semop, id, sb, 2);
}

static void pause_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int exit_code(pid_t pid)
{
	int status;
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Wait (without a time limit that could fail a slow run) until `cmd` of semaphore `num` is `n`. */
static int wait_count(int id, int num, int cmd, int n)
{
	for (int i = 0; i < 30000; i++) {
		long r = sctl(id, num, cmd, 0);
		if (r == n)
			return 1;
		if (r < 0)
			return 0;
		pause_ms(2);
	}
	return 0;
}

static void on_usr1(int sig)
{
	(void)sig;
}

static void child_exit(long r)
{
	_exit(r == -1 ? errno : 0);
}

static void read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	long r = fd < 0 ? -1 : read(fd, buf, size - 1);
	buf[r > 0 ? r : 0] = 0;
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	struct semid_ds ds;
	struct seminfo si;
	unsigned short vals[3];
	char buf[4096];
	int id, priv, p[2];
	pid_t pid;
	long r;

	tap_plan(113);

	check_ok(unshare(CLONE_NEWIPC), "unshare(CLONE_NEWIPC) as root");

	/* An empty namespace with Linux's default limits. */
	check_eq(sctl(0, 0, IPC_INFO, (long)&si), 0, "IPC_INFO returns 0 in a new namespace");
	check(si.semmni == 32000 && si.semmsl == 32000 && si.semmns == 1024000000 && si.semopm == 500 &&
	      si.semvmx == 32767 && si.semaem == 32767 && si.semusz == 20 && si.semume == 500 &&
	      si.semmap == 1024000000 && si.semmnu == 1024000000, "IPC_INFO: Linux's SEM* limits");
	check_eq(sctl(0, 0, SEM_INFO, (long)&si), 0, "SEM_INFO returns 0");
	check(si.semusz == 0 && si.semaem == 0, "SEM_INFO: no sets, no semaphores in use");
	read_file("/proc/sysvipc/sem", buf, sizeof(buf));
	check_str(buf, "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n",
		  "/proc/sysvipc/sem: only its header");

	/* semget */
	check_errno(semget(IPC_PRIVATE, -1, 0600), EINVAL, "semget of -1 semaphores is EINVAL");
	check_errno(semget(IPC_PRIVATE, 32001, 0600), EINVAL, "semget of 32001 (> SEMMSL) is EINVAL");
	check_errno(semget(IPC_PRIVATE, 0, 0600), EINVAL, "semget IPC_PRIVATE of 0 semaphores is EINVAL");
	priv = check_ok(semget(IPC_PRIVATE, 1, 0600), "semget IPC_PRIVATE of 1");
	check_errno(semget(KEY, 3, 0600), ENOENT, "semget of a missing key without IPC_CREAT is ENOENT");
	id = check_ok(semget(KEY, 3, IPC_CREAT | 0640), "semget IPC_CREAT of 3 semaphores");
	check_eq(semget(KEY, 0, 0), id, "semget of the key with nsems 0 returns it");
	check_eq(semget(KEY, 2, IPC_CREAT | 0600), id, "semget of the key with fewer semaphores returns it");
	check_errno(semget(KEY, 4, 0), EINVAL, "semget of the key with more semaphores than it has is EINVAL");
	check_errno(semget(KEY, 3, IPC_CREAT | IPC_EXCL | 0600), EEXIST, "IPC_CREAT|IPC_EXCL of the key is EEXIST");

	/* IPC_STAT */
	time_t now = time(NULL);
	check_eq(sctl(id, 0, IPC_STAT, (long)&ds), 0, "IPC_STAT returns 0");
	check(ds.sem_perm.__key == KEY && (ds.sem_perm.mode & 0777) == 0640 && ds.sem_perm.uid == 0 &&
	      ds.sem_perm.cuid == 0 && ds.sem_nsems == 3 && ds.sem_otime == 0,
	      "IPC_STAT: key, mode 0640, uid 0, 3 semaphores, no semop yet");
	check(ds.sem_ctime >= now - 5 && ds.sem_ctime <= now + 5, "sem_ctime is now");
	check_errno(sctl(id, 0, IPC_STAT, (long)BAD_PTR), EFAULT, "IPC_STAT into a bad pointer is EFAULT");

	/* GETVAL SETVAL GETALL SETALL GETPID */
	check_eq(sctl(id, 1, GETVAL, 0), 0, "a new semaphore is 0");
	check_eq(sctl(id, 1, GETPID, 0), 0, "... and no process changed it");
	check_ok(sctl(id, 1, SETVAL, 5), "SETVAL 5");
	check_eq(sctl(id, 1, GETVAL, 0), 5, "GETVAL 5");
	check_eq(sctl(id, 1, GETPID, 0), getpid(), "GETPID: ours");
	check_errno(sctl(id, 1, SETVAL, 32768), ERANGE, "SETVAL 32768 (> SEMVMX) is ERANGE");
	check_errno(sctl(id, 1, SETVAL, -1), ERANGE, "SETVAL -1 is ERANGE");
	check_errno(sctl(id, 3, SETVAL, 1), EINVAL, "SETVAL of semaphore 3 of 3 is EINVAL");
	check_errno(sctl(id, -1, GETVAL, 0), EINVAL, "GETVAL of semaphore -1 is EINVAL");
	check_errno(sctl(id + 7, 0, GETVAL, 0), EINVAL, "GETVAL of an unused id is EINVAL");
	check_errno(sctl(-1, 0, GETVAL, 0), EINVAL, "semctl of id -1 is EINVAL");
	check_errno(sctl(id, 0, 99, 0), EINVAL, "semctl of an unknown command is EINVAL");
	vals[0] = 1, vals[1] = 2, vals[2] = 3;
	check_ok(sctl(id, 0, SETALL, (long)vals), "SETALL 1 2 3");
	memset(vals, 0xff, sizeof(vals));
	check_ok(sctl(id, 0, GETALL, (long)vals), "GETALL");
	check(vals[0] == 1 && vals[1] == 2 && vals[2] == 3, "GETALL reads 1 2 3");
	vals[1] = 40000;
	check_errno(sctl(id, 0, SETALL, (long)vals), ERANGE, "SETALL with 40000 is ERANGE");
	check_eq(sctl(id, 1, GETVAL, 0), 2, "... and sets nothing");
	check_errno(sctl(id, 0, GETALL, (long)BAD_PTR), EFAULT, "GETALL into a bad pointer is EFAULT");
	check_errno(sctl(id, 0, SETALL, (long)BAD_PTR), EFAULT, "SETALL from a bad pointer is EFAULT");

	/* semop without blocking */
	check_ok(op1(id, 0, -1, 0), "semop decrements semaphore 0 (1 -> 0)");
	sctl(id, 0, IPC_STAT, (long)&ds);
	check(ds.sem_otime != 0, "sem_otime is set by a semop");
	check_errno(op1(id, 0, -1, IPC_NOWAIT), EAGAIN, "a decrement below 0 with IPC_NOWAIT is EAGAIN");
	check_errno(op2(id, 1, -1, 0, 0, -1, IPC_NOWAIT), EAGAIN, "an array whose second step would block is EAGAIN");
	check_eq(sctl(id, 1, GETVAL, 0), 2, "... and its first step is not applied");
	check_errno(op1(id, 2, 0, IPC_NOWAIT), EAGAIN, "wait-for-zero of 3 with IPC_NOWAIT is EAGAIN");
	check_ok(op1(id, 0, 0, 0), "wait-for-zero of 0 succeeds at once");
	check_errno(op1(id, 2, 32767, 0), ERANGE, "an increment past SEMVMX is ERANGE");
	check_ok(op2(id, 0, 2, 0, 0, -2, 0), "one semaphore twice in an array: +2 then -2");
	check_errno(op2(id, 0, -1, IPC_NOWAIT, 0, 1, 0), EAGAIN, "-1 then +1 of a 0 is EAGAIN (steps in order)");
	check_errno(op1(id, 3, 1, 0), EFBIG, "semop of semaphore 3 of 3 is EFBIG");
	check_errno(syscall(SYS_semop, id, vals, 0), EINVAL, "semop of 0 operations is EINVAL");
	check_errno(syscall(SYS_semop, id, vals, 501), E2BIG, "semop of 501 operations (> SEMOPM) is E2BIG");
	check_errno(syscall(SYS_semop, id, BAD_PTR, 1), EFAULT, "semop from a bad pointer is EFAULT");
	check_errno(op1(-1, 0, 1, 0), EINVAL, "semop of id -1 is EINVAL");
	check_errno(op1(id + 7, 0, 1, 0), EINVAL, "semop of an unused id is EINVAL");

	/* semtimedop */
	{
		struct sembuf sb = {0, -1, 0};
		struct timespec ts = {0, 30000000};
		check_errno(syscall(SYS_semtimedop, id, &sb, 1, &ts), EAGAIN, "semtimedop times out: EAGAIN");
		ts.tv_nsec = 0;
		check_errno(syscall(SYS_semtimedop, id, &sb, 1, &ts), EAGAIN, "a zero timeout: EAGAIN at once");
		ts.tv_nsec = 1000000000;
		check_errno(syscall(SYS_semtimedop, id, &sb, 1, &ts), EINVAL, "a timeout of 1e9 ns is EINVAL");
		check_errno(syscall(SYS_semtimedop, id, &sb, 1, BAD_PTR), EFAULT, "a timeout at a bad pointer is EFAULT");
		sb.sem_op = 1;
		ts.tv_nsec = 0;
		check_ok(syscall(SYS_semtimedop, id, &sb, 1, &ts), "semtimedop that need not wait ignores the timeout");
		check_ok(op1(id, 0, -1, 0), "(back to 0)");
	}

	/* A blocked decrement, woken by an increment: the waker performs it for the sleeper. */
	pid = fork();
	if (pid == 0)
		child_exit(op1(id, 0, -1, 0));
	check(wait_count(id, 0, GETNCNT, 1), "a child's decrement of a 0 blocks: GETNCNT 1");
	check_eq(sctl(id, 0, GETZCNT, 0), 0, "GETZCNT 0");
	check_ok(op1(id, 0, 1, 0), "increment");
	check_eq(exit_code(pid), 0, "the blocked decrement completes");
	check_eq(sctl(id, 0, GETVAL, 0), 0, "the semaphore is 0 again");
	check_eq(sctl(id, 0, GETPID, 0), pid, "GETPID: the child, whose operation was done last");

	/* Wait-for-zero, woken by a decrement to 0. */
	pid = fork();
	if (pid == 0)
		child_exit(op1(id, 1, 0, 0));
	check(wait_count(id, 1, GETZCNT, 1), "a child's wait-for-zero of 2 blocks: GETZCNT 1");
	check_ok(op1(id, 1, -2, 0), "decrement to 0");
	check_eq(exit_code(pid), 0, "the wait-for-zero completes");

	/* All or nothing while blocked; GETNCNT counts the step that blocks. */
	pid = fork();
	if (pid == 0)
		child_exit(op2(id, 0, -1, 0, 1, -1, 0));
	check(wait_count(id, 0, GETNCNT, 1), "a child's {0:-1, 1:-1} blocks on semaphore 0");
	check_eq(sctl(id, 1, GETNCNT, 0), 0, "GETNCNT of semaphore 1 is 0 (not the blocking step)");
	check_ok(sctl(id, 0, SETVAL, 1), "SETVAL semaphore 0 to 1");
	check(wait_count(id, 1, GETNCNT, 1), "the child now blocks on semaphore 1");
	check_eq(sctl(id, 0, GETVAL, 0), 1, "and semaphore 0 is still 1: nothing applied");
	check_ok(sctl(id, 1, SETVAL, 1), "SETVAL semaphore 1 to 1");
	check_eq(exit_code(pid), 0, "the array completes");
	check(sctl(id, 0, GETVAL, 0) == 0 && sctl(id, 1, GETVAL, 0) == 0, "both steps applied");

	/* A long semtimedop woken early. */
	pid = fork();
	if (pid == 0) {
		struct sembuf sb = {2, -4, 0};
		struct timespec ts = {100, 0};
		child_exit(syscall(SYS_semtimedop, id, &sb, 1, &ts));
	}
	check(wait_count(id, 2, GETNCNT, 1), "a child's semtimedop(100 s) blocks");
	check_ok(op1(id, 2, 1, 0), "increment 3 -> 4");
	check_eq(exit_code(pid), 0, "semtimedop completes before its timeout");

	/* EINTR, even with SA_RESTART. */
	pid = fork();
	if (pid == 0) {
		struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
		sigaction(SIGUSR1, &sa, NULL);
		child_exit(op1(id, 0, -1, 0));
	}
	check(wait_count(id, 0, GETNCNT, 1), "a child blocks in semop");
	kill(pid, SIGUSR1);
	check_eq(exit_code(pid), EINTR, "a signal handler interrupts semop: EINTR despite SA_RESTART");
	check_eq(sctl(id, 0, GETNCNT, 0), 0, "GETNCNT 0 after it left");

	/* SEM_UNDO */
	pid = fork();
	if (pid == 0)
		child_exit(op1(id, 0, 3, SEM_UNDO));
	check_eq(exit_code(pid), 0, "a child increments by 3 with SEM_UNDO and exits");
	check_eq(sctl(id, 0, GETVAL, 0), 0, "its exit undid the increment");
	check_eq(sctl(id, 0, GETPID, 0), pid, "GETPID: the exited child (its undo)");
	sctl(id, 0, SETVAL, 5);
	pid = fork();
	if (pid == 0)
		child_exit(op1(id, 0, -2, SEM_UNDO) || op1(id, 0, -1, SEM_UNDO));
	check_eq(exit_code(pid), 0, "a child decrements by 2 and 1 with SEM_UNDO");
	check_eq(sctl(id, 0, GETVAL, 0), 5, "its exit gives back 3");
	if (pipe(p) == 0) {
		char c;
		sctl(id, 0, SETVAL, 0);
		pid = fork();
		if (pid == 0) {
			op1(id, 0, 1, SEM_UNDO);
			write(p[1], "x", 1);
			pause_ms(300);
			_exit(0);
		}
		read(p[0], &c, 1);
		check_ok(op1(id, 0, -1, 0), "the parent takes what a child gave with SEM_UNDO");
		check_eq(exit_code(pid), 0, "the child exits");
		check_eq(sctl(id, 0, GETVAL, 0), 0, "its undo of -1 is clamped at 0");
		pid = fork();
		if (pid == 0) {
			op1(id, 0, 2, SEM_UNDO);
			write(p[1], "x", 1);
			pause_ms(300);
			_exit(0);
		}
		read(p[0], &c, 1);
		check_ok(sctl(id, 0, SETVAL, 7), "SETVAL while a child holds an undo");
		exit_code(pid);
		check_eq(sctl(id, 0, GETVAL, 0), 7, "SETVAL cleared the child's undo");
		close(p[0]);
		close(p[1]);
	}
	sctl(id, 0, SETVAL, 0);
	pid = fork();
	if (pid == 0)
		child_exit(op1(id, 0, -1, SEM_UNDO));
	check(wait_count(id, 0, GETNCNT, 1), "a child blocks in a SEM_UNDO decrement");
	op1(id, 0, 1, 0);
	check_eq(exit_code(pid), 0, "it completes and exits");
	check_eq(sctl(id, 0, GETVAL, 0), 1, "the undo of the operation done for it applied at its exit");

	/* SEM_STAT, SEM_INFO, /proc/sysvipc/sem */
	check_eq(sctl(id & 0x7fff, 0, SEM_STAT, (long)&ds), id, "SEM_STAT of the index returns the id");
	check_eq(sctl(id & 0x7fff, 0, SEM_STAT_ANY, (long)&ds), id, "SEM_STAT_ANY too");
	check_eq(sctl(0, 0, SEM_INFO, (long)&si), id & 0x7fff, "SEM_INFO returns the highest index");
	check(si.semusz == 2 && si.semaem == 4, "SEM_INFO: 2 sets, 4 semaphores");
	read_file("/proc/sysvipc/sem", buf, sizeof(buf));
	{
		char want[128];
		snprintf(want, sizeof(want), "%10d %10d  %4o %10u %5u %5u %5u %5u ", KEY, id, 0640, 3U, 0U, 0U, 0U, 0U);
		check(strstr(buf, want) != NULL, "/proc/sysvipc/sem lists the set");
	}

	/* Permissions, as another user. */
	sctl(id, 0, IPC_STAT, (long)&ds);
	ds.sem_perm.mode = 0600;
	check_ok(sctl(id, 0, IPC_SET, (long)&ds), "IPC_SET mode 0600");
	pid = fork();
	if (pid == 0) {
		int ok = 1;
		if (setgid(65534) || setuid(65534))
			_exit(100);
		ok &= semget(KEY, 0, 0400) == -1 && errno == EACCES;
		ok &= op1(id, 0, 1, IPC_NOWAIT) == -1 && errno == EACCES;
		ok &= op1(id, 0, 0, IPC_NOWAIT) == -1 && errno == EACCES;
		ok &= sctl(id, 0, GETVAL, 0) == -1 && errno == EACCES;
		ok &= sctl(id, 0, SETVAL, 1) == -1 && errno == EACCES;
		ok &= sctl(id, 0, IPC_STAT, (long)&ds) == -1 && errno == EACCES;
		ok &= sctl(id, 0, IPC_RMID, 0) == -1 && errno == EPERM;
		int mine = semget(IPC_PRIVATE, 1, 0600);
		ok &= sctl(mine, 0, SETVAL, 3) == 0 && sctl(mine, 0, IPC_RMID, 0) == 0;
		_exit(ok ? 0 : 1);
	}
	check_eq(exit_code(pid), 0, "as uid 65534: EACCES for semget 0400, semop, GETVAL, SETVAL, IPC_STAT; "
		 "EPERM for IPC_RMID; its own set is its to use and remove");

	/* Another IPC namespace sees none of these. */
	pid = fork();
	if (pid == 0) {
		int ok = unshare(CLONE_NEWIPC) == 0;
		ok &= semget(KEY, 0, 0) == -1 && errno == ENOENT;
		ok &= sctl(id, 0, GETVAL, 0) == -1 && errno == EINVAL;
		ok &= sctl(0, 0, SEM_INFO, (long)&si) == 0 && si.semusz == 0;
		_exit(ok ? 0 : 1);
	}
	check_eq(exit_code(pid), 0, "after unshare(CLONE_NEWIPC) a child sees no set");

	/* IPC_RMID wakes waiters with EIDRM. */
	pid = fork();
	if (pid == 0)
		child_exit(op1(id, 2, -100, 0));
	check(wait_count(id, 2, GETNCNT, 1), "a child blocks in semop");
	check_ok(sctl(id, 0, IPC_RMID, 0), "IPC_RMID");
	check_eq(exit_code(pid), EIDRM, "the blocked semop fails with EIDRM");
	check_errno(sctl(id, 0, IPC_STAT, (long)&ds), EINVAL, "IPC_STAT of the removed set is EINVAL");
	check_errno(op1(id, 0, 1, 0), EINVAL, "semop of the removed set is EINVAL");
	check_errno(semget(KEY, 0, 0), ENOENT, "its key is gone");
	check_ok(sctl(priv, 0, IPC_RMID, 0), "IPC_RMID of the private set");
	r = sctl(0, 0, SEM_INFO, (long)&si);
	check(r == 0 && si.semusz == 0 && si.semaem == 0, "SEM_INFO: nothing left");
	return tap_done();
}
