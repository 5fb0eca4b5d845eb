/*
 * sig_signalfd: signalfd signalfd4.  Creation and mask update (SIGKILL and
 * SIGSTOP silently dropped; /proc/self/fd and fdinfo's sigmask), the errno
 * paths (sizemask, flags, bad pointers, fd not a signalfd, closed fd, in
 * Linux's order), read (a buffer under 128 bytes EINVAL, EAGAIN, several
 * signals per read, thread-directed before process-directed, a bad buffer
 * loses the dequeued signal), the signalfd_siginfo fields from kill, tgkill,
 * sigqueue and SIGCHLD (status, and CPU time in clock ticks), poll and epoll
 * readiness, a blocked poll, epoll_wait and read woken by a signal from
 * another process, a signal taken by read never reaching its handler,
 * another thread's pending signal unseen, fork (the child reads its own
 * signals) and execve (the descriptor survives).
 */
#include "tap.h"
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

static volatile int usr1_handled;
static void on_usr1(int sig) { (void)sig; usr1_handled++; }

static sigset_t set_of(int a, int b, int c)
{
	sigset_t s;

	sigemptyset(&s);
	if (a)
		sigaddset(&s, a);
	if (b)
		sigaddset(&s, b);
	if (c)
		sigaddset(&s, c);
	return s;
}

static long sfd(int fd, const void *mask, unsigned long size, long flags)
{
	return syscall(SYS_signalfd4, fd, mask, size, flags);
}

static int pending(int sig)
{
	sigset_t p;

	sigpending(&p);
	return sigismember(&p, sig);
}

static int readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) == 1 && p.revents == POLLIN;
}

/* The exec'd image: fd argv[2] must still be a signalfd for SIGUSR1 and read its own kill. */
static int exec_child(int fd)
{
	struct signalfd_siginfo si;
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof link - 1);
	if (n < 0)
		return 1;
	link[n] = 0;
	if (strcmp(link, "anon_inode:[signalfd]") != 0)
		return 2;
	kill(getpid(), SIGUSR1);
	if (read(fd, &si, sizeof si) != sizeof si || si.ssi_signo != SIGUSR1 || si.ssi_pid != (uint32_t)getpid())
		return 3;
	return 0;
}

struct thread_arg {
	int fd;
	pid_t tid;
	volatile int go;
	int got;
};

static void *reader_thread(void *p)
{
	struct thread_arg *a = p;
	struct signalfd_siginfo si;

	a->tid = (pid_t)syscall(SYS_gettid);
	while (!a->go)
		usleep(1000);
	if (read(a->fd, &si, sizeof si) == sizeof si)
		a->got = (int)si.ssi_signo;
	return NULL;
}

int main(int argc, char **argv)
{
	struct signalfd_siginfo si[5];
	struct epoll_event ev = {.events = EPOLLIN}, out;
	struct sigaction sa;
	sigset_t m, blocked;
	union sigval val;
	char path[64], buf[256];
	int fd, fd2, ep, pfd[2], st, sync_pipe[2];
	ssize_t n;
	pid_t pid, me = getpid();

	if (argc == 3 && strcmp(argv[1], "exec-child") == 0)
		return exec_child(atoi(argv[2]));

	tap_plan(90);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGUSR1);
	sigaddset(&blocked, SIGUSR2);
	sigaddset(&blocked, SIGTERM);
	sigaddset(&blocked, SIGCHLD);
	sigaddset(&blocked, SIGRTMIN);
	sigprocmask(SIG_BLOCK, &blocked, NULL);

	/* -- errno paths, in Linux's order: sizemask, then the mask's copy, then flags, then fd */
	m = set_of(SIGUSR1, 0, 0);
	check_errno(sfd(-1, &m, 4, 0), EINVAL, "sizemask 4: EINVAL");
	check_errno(sfd(-1, &m, 16, 0), EINVAL, "sizemask 16: EINVAL");
	check_errno(sfd(-1, &m, ~0UL, 0), EINVAL, "sizemask ~0: EINVAL");
	check_errno(sfd(-1, &m, 0x100000008UL, 0), EINVAL, "sizemask 2^32+8 (a size_t): EINVAL");
	check_errno(sfd(-1, BAD_PTR, 4, 0), EINVAL, "a bad size is EINVAL before the mask is read");
	check_errno(sfd(-1, BAD_PTR, 8, 0), EFAULT, "a bad mask pointer: EFAULT");
	check_errno(sfd(-1, NULL, 8, 0), EFAULT, "a NULL mask: EFAULT");
	check_errno(sfd(-1, (void *)0xffffffffffff0000UL, 8, 0), EFAULT, "a kernel-half mask pointer: EFAULT");
	check_errno(sfd(-1, BAD_PTR, 8, 99), EFAULT, "the mask is read before the flags are checked");
	check_errno(sfd(-1, &m, 8, 1), EINVAL, "unknown flag 1: EINVAL");
	check_errno(sfd(-1, &m, 8, O_APPEND), EINVAL, "O_APPEND is not a signalfd flag: EINVAL");
	check_errno(syscall(SYS_signalfd, -1, &m, 4), EINVAL, "signalfd (282) sizemask 4: EINVAL");
	check_errno(sfd(-2, &m, 8, 0), EBADF, "ufd -2: EBADF");
	check_errno(sfd(1000, &m, 8, 0), EBADF, "a closed fd: EBADF");
	pipe(pfd);
	check_errno(sfd(pfd[0], &m, 8, 0), EINVAL, "a pipe is not a signalfd: EINVAL");

	/* -- creation */
	m = set_of(SIGUSR1, SIGKILL, SIGSTOP);
	fd = check_ok(sfd(-1, &m, 8, SFD_NONBLOCK | SFD_CLOEXEC), "signalfd4(-1, {USR1 KILL STOP}, NONBLOCK|CLOEXEC)");
	check_eq(fcntl(fd, F_GETFD), FD_CLOEXEC, "SFD_CLOEXEC sets FD_CLOEXEC");
	check_eq(fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK), O_RDWR | O_NONBLOCK, "O_RDWR|O_NONBLOCK");
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	n = readlink(path, buf, sizeof buf - 1);
	buf[n > 0 ? n : 0] = 0;
	check_str(buf, "anon_inode:[signalfd]", "/proc/self/fd names it");
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	{
		int f = open(path, O_RDONLY);

		n = read(f, buf, sizeof buf - 1);
		buf[n > 0 ? n : 0] = 0;
		close(f);
	}
	check(strstr(buf, "sigmask:\t0000000000000200\n") != NULL, "fdinfo: sigmask of SIGUSR1 alone (KILL, STOP dropped)");
	check_eq(lseek(fd, 0, SEEK_CUR), 0, "lseek: 0 (noop_llseek)");
	check_errno(write(fd, buf, 128), EINVAL, "write: EINVAL");
	check_errno(read(fd, si, 127), EINVAL, "read of 127 bytes: EINVAL");
	check_errno(read(fd, si, 0), EINVAL, "read of 0 bytes: EINVAL");
	check_errno(read(fd, si, 128), EAGAIN, "nothing pending, O_NONBLOCK: EAGAIN");
	check_errno(syscall(SYS_read, fd, BAD_PTR, 128), EAGAIN, "nothing pending, a bad buffer: EAGAIN (dequeue comes first)");
	check(!readable(fd), "poll: not readable");
	fd2 = check_ok(syscall(SYS_signalfd, -1, &m, 8), "signalfd (282)");
	check_eq(fcntl(fd2, F_GETFL) & O_NONBLOCK, 0, "signalfd (282): blocking");

	/* -- kill: SI_USER, pid, uid */
	kill(me, SIGUSR1);
	check(readable(fd), "poll: readable once SIGUSR1 is pending");
	check(readable(fd2), "poll: the second signalfd too");
	memset(si, 0xAA, sizeof si);
	check_eq(read(fd, si, sizeof si), 128, "read: one signalfd_siginfo");
	check_eq(si[0].ssi_signo, SIGUSR1, "ssi_signo");
	check_eq(si[0].ssi_code, SI_USER, "kill: ssi_code SI_USER");
	check_eq(si[0].ssi_pid, me, "kill: ssi_pid");
	check_eq(si[0].ssi_uid, getuid(), "kill: ssi_uid");
	check(si[0].ssi_int == 0 && si[0].ssi_ptr == 0 && si[0].ssi_status == 0 && si[0].ssi_errno == 0,
	      "kill: the other fields are zero");
	check(!pending(SIGUSR1), "the signal was dequeued");
	check_errno(read(fd, si, 128), EAGAIN, "then EAGAIN");

	/* -- mask update, sigqueue */
	m = set_of(SIGUSR2, SIGRTMIN, SIGTERM);
	check_eq(sfd(fd, &m, 8, 0), fd, "signalfd4(fd, new mask) returns fd");
	check_errno(sfd(fd, BAD_PTR, 8, 0), EFAULT, "an update with a bad mask: EFAULT");
	kill(me, SIGUSR1);
	check(!readable(fd), "SIGUSR1, no longer in the mask: not readable");
	val.sival_ptr = (void *)0x1122334455667788UL;
	sigqueue(me, SIGRTMIN, val);
	check_eq(read(fd, si, sizeof si), 128, "read the queued SIGRTMIN");
	check(si[0].ssi_signo == (uint32_t)SIGRTMIN && si[0].ssi_code == SI_QUEUE, "sigqueue: ssi_code SI_QUEUE");
	check_eq(si[0].ssi_ptr, 0x1122334455667788UL, "sigqueue: ssi_ptr");
	check_eq(si[0].ssi_int, 0x55667788, "sigqueue: ssi_int (low 32 bits)");
	check(si[0].ssi_pid == (uint32_t)me && si[0].ssi_uid == getuid(), "sigqueue: ssi_pid ssi_uid");

	/* -- several per read; thread-directed first */
	kill(me, SIGTERM);
	val.sival_int = 1;
	sigqueue(me, SIGRTMIN, val);
	val.sival_int = 2;
	sigqueue(me, SIGRTMIN, val);
	syscall(SYS_tgkill, me, syscall(SYS_gettid), SIGUSR2);
	memset(si, 0, sizeof si);
	check_eq(read(fd, si, sizeof si), 4 * 128, "four signals in one 640-byte read");
	check(si[0].ssi_signo == SIGUSR2 && si[0].ssi_code == SI_TKILL, "the thread's own (tgkill, SI_TKILL) first");
	check_eq(si[1].ssi_signo, SIGTERM, "then the process's, lowest first");
	check(si[2].ssi_signo == (uint32_t)SIGRTMIN && si[2].ssi_int == 1, "real-time signals queue: the first");
	check(si[3].ssi_signo == (uint32_t)SIGRTMIN && si[3].ssi_int == 2, "and the second, in order");
	kill(me, SIGUSR2);
	{
		struct iovec iov[2] = {{buf, 64}, {buf + 64, 64}};

		check_eq(readv(fd, iov, 2), 128, "readv of 64+64 bytes: one siginfo across both");
		check_eq(((struct signalfd_siginfo *)buf)->ssi_signo, SIGUSR2, "readv: the signal");
	}

	/* -- hostile buffers */
	kill(me, SIGUSR2);
	check_errno(syscall(SYS_read, fd, si, ~0UL), EFAULT, "a count past the address space: EFAULT");
	check(pending(SIGUSR2), "and the signal stays pending");
	check_errno(syscall(SYS_read, fd, BAD_PTR, 128), EFAULT, "a bad buffer with a signal pending: EFAULT");
	check(!pending(SIGUSR2), "the dequeued signal is lost, as Linux");

	/* -- a signal read through the signalfd never reaches its handler */
	m = set_of(SIGUSR1, 0, 0);
	sfd(fd, &m, 8, 0);
	check_eq(read(fd, si, sizeof si), 128, "read the SIGUSR1 left pending");
	sigprocmask(SIG_UNBLOCK, &m, NULL);
	sigprocmask(SIG_BLOCK, &m, NULL);
	check_eq(usr1_handled, 0, "its handler did not run");
	kill(me, SIGUSR1);
	sigprocmask(SIG_UNBLOCK, &m, NULL);
	sigprocmask(SIG_BLOCK, &m, NULL);
	check_eq(usr1_handled, 1, "one not read is delivered to the handler");

	/* -- epoll */
	ep = epoll_create1(0);
	check_ok(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), "epoll_ctl ADD");
	check_eq(epoll_wait(ep, &out, 1, 0), 0, "epoll_wait: nothing pending");
	kill(me, SIGUSR1);
	check_eq(epoll_wait(ep, &out, 1, 0), 1, "epoll_wait: readable after kill");
	check_eq(out.events, EPOLLIN, "EPOLLIN");
	read(fd, si, sizeof si);
	{
		struct epoll_event et = {.events = EPOLLIN | EPOLLET};
		int ep2 = epoll_create1(0);

		m = set_of(SIGUSR1, SIGUSR2, 0);
		sfd(fd, &m, 8, 0);
		epoll_ctl(ep2, EPOLL_CTL_ADD, fd, &et);
		kill(me, SIGUSR1);
		check_eq(epoll_wait(ep2, &out, 1, 0), 1, "EPOLLET: reported once a signal is queued");
		check_eq(epoll_wait(ep2, &out, 1, 0), 0, "EPOLLET: not again without a new signal");
		kill(me, SIGUSR2);
		check_eq(epoll_wait(ep2, &out, 1, 0), 1, "EPOLLET: a new signal is a new edge");
		check_eq(read(fd, si, sizeof si), 2 * 128, "both read");
		close(ep2);
		m = set_of(SIGUSR1, 0, 0);
		sfd(fd, &m, 8, 0);
	}

	/* -- wake-ups by a signal from another process: poll, epoll_wait, a blocking read */
	pipe(sync_pipe);
	pid = fork();
	if (pid == 0) {
		char c;
		int i;

		for (i = 0; i < 3; i++) {
			if (read(sync_pipe[0], &c, 1) != 1)
				_exit(1);
			usleep(50000);          /* most likely after the parent parks; either way correct */
			kill(getppid(), SIGUSR1);
		}
		_exit(0);
	}
	{
		struct pollfd p = {.fd = fd, .events = POLLIN};

		write(sync_pipe[1], "x", 1);
		check_eq(poll(&p, 1, 20000), 1, "a blocked poll is woken by another process's kill");
		read(fd, si, sizeof si);
		write(sync_pipe[1], "x", 1);
		check_eq(epoll_wait(ep, &out, 1, 20000), 1, "a blocked epoll_wait is woken too");
		read(fd, si, sizeof si);
		write(sync_pipe[1], "x", 1);
		check_eq(read(fd2, si, sizeof si), 128, "a blocking read waits for the signal");
		check(si[0].ssi_signo == SIGUSR1 && si[0].ssi_pid == (uint32_t)pid, "from the other process (ssi_pid)");
	}
	waitpid(pid, &st, 0);

	/* -- a masked signal left unblocked: a read blocked on it takes it (no EINTR) */
	pipe(sync_pipe);
	pid = fork();
	if (pid == 0) {
		struct pollfd p = {.fd = sync_pipe[0], .events = POLLIN};

		do
			kill(getppid(), SIGUSR1);       /* until the parent's read has taken one */
		while (poll(&p, 1, 50) == 0);
		_exit(0);
	}
	m = set_of(SIGUSR1, 0, 0);
	sigprocmask(SIG_UNBLOCK, &m, NULL);
	n = read(fd2, si, sizeof si);
	sigprocmask(SIG_BLOCK, &m, NULL);
	check_eq(n, 128, "a blocked read takes a signal of its mask even when it is unblocked");
	check_eq(si[0].ssi_signo, SIGUSR1, "that signal");
	write(sync_pipe[1], "x", 1);
	waitpid(pid, &st, 0);
	sigtimedwait(&m, NULL, &(struct timespec){0, 0});

	/* -- SIGCHLD: status and CPU time */
	m = set_of(SIGCHLD, 0, 0);
	sfd(fd2, &m, 8, 0);
	sigtimedwait(&m, NULL, &(struct timespec){0, 0});   /* the one the last child sent */
	pid = fork();
	if (pid == 0) {
		struct timespec ts;

		do
			clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
		while (ts.tv_sec == 0 && ts.tv_nsec < 300000000);
		_exit(42);
	}
	check_eq(read(fd2, si, sizeof si), 128, "SIGCHLD read when the child exits");
	check(si[0].ssi_signo == SIGCHLD && si[0].ssi_code == CLD_EXITED, "CLD_EXITED");
	check_eq(si[0].ssi_pid, pid, "SIGCHLD: ssi_pid is the child");
	check_eq(si[0].ssi_status, 42, "SIGCHLD: ssi_status is its exit code");
	check_eq(si[0].ssi_uid, getuid(), "SIGCHLD: ssi_uid");
	check(si[0].ssi_utime + si[0].ssi_stime >= 10, "SIGCHLD: ssi_utime+ssi_stime count its 0.3 s of CPU (%llu+%llu ticks)",
	      (unsigned long long)si[0].ssi_utime, (unsigned long long)si[0].ssi_stime);
	waitpid(pid, &st, 0);

	/* -- another thread's pending signal is not seen */
	{
		struct thread_arg a = {.fd = fd2};
		pthread_t th;

		m = set_of(SIGUSR2, 0, 0);
		sfd(fd2, &m, 8, 0);
		pthread_create(&th, NULL, reader_thread, &a);
		while (!__atomic_load_n(&a.tid, __ATOMIC_SEQ_CST))
			usleep(1000);
		syscall(SYS_tgkill, me, a.tid, SIGUSR2);
		fcntl(fd2, F_SETFL, O_NONBLOCK);
		check_errno(read(fd2, si, sizeof si), EAGAIN, "a signal pending for another thread is not read");
		check(!readable(fd2), "nor does poll see it");
		fcntl(fd2, F_SETFL, 0);
		a.go = 1;
		pthread_join(th, NULL);
		check_eq(a.got, SIGUSR2, "that thread reads it from the same fd");
	}

	/* -- fork: the child reads its own signals; exec: the fd survives */
	m = set_of(SIGUSR1, 0, 0);
	sfd(fd, &m, 8, 0);
	kill(me, SIGUSR1);
	pid = fork();
	if (pid == 0) {
		struct signalfd_siginfo c;

		if (read(fd, &c, sizeof c) != -1 || errno != EAGAIN)
			_exit(1);               /* the parent's pending signal is not the child's */
		kill(getpid(), SIGUSR1);
		if (read(fd, &c, sizeof c) != sizeof c || c.ssi_pid != (uint32_t)getpid())
			_exit(2);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	check_eq(st, 0, "fork: the child's fd reads the child's signals, not the parent's");
	check_eq(read(fd, si, sizeof si), 128, "the parent's signal is still there for it");
	check_eq(si[0].ssi_pid, me, "from the parent itself");
	pid = fork();
	if (pid == 0) {
		char num[16];
		char *av[] = {argv[0], "exec-child", num, NULL};

		fcntl(fd, F_SETFD, 0);
		snprintf(num, sizeof num, "%d", fd);
		execv("/proc/self/exe", av);
		_exit(9);
	}
	waitpid(pid, &st, 0);
	check_eq(st, 0, "execve: the fd survives and reads the new image's signals");

	/* -- close */
	check_ok(close(fd), "close");
	check_errno(sfd(fd, &m, 8, 0), EBADF, "a closed signalfd: EBADF");
	return tap_done();
}
