/*
 * ipc_mqueue: POSIX message queues (mq_open, mq_unlink, mq_timedsend,
 * mq_timedreceive, mq_notify, mq_getsetattr), through glibc and syscall(2).
 *
 * Success paths: create with default attributes (10 x 8192) and given ones;
 * messages come out highest priority first, FIFO within one; the status
 * line read(2) gives (QSIZE, NOTIFY, SIGNO, NOTIFY_PID); poll readiness
 * (POLLOUT when room, POLLIN when messages); a queue outlives mq_unlink while
 * open, and a dup and a forked child share it; the descriptor is
 * close-on-exec; a receiver blocked in a child is woken by the parent's send
 * and a sender blocked on a full queue by a receive; mq_notify SIGEV_SIGNAL
 * sends the signal (SI_MESGQ, si_value) once, when a message reaches an
 * empty queue, SIGEV_NONE registers silently, NULL removes; mq_getsetattr
 * changes only O_NONBLOCK.
 * Errno paths: EINVAL (no leading slash: glibc; bad attributes; priority
 * >= MQ_PRIO_MAX; bad tv_nsec; mq_flags other than O_NONBLOCK; a bad sigevent),
 * EACCES (a slash inside the name, "."; permissions for another user),
 * ENOENT, EEXIST, ENAMETOOLONG, EMSGSIZE (both ways), EAGAIN (O_NONBLOCK),
 * ETIMEDOUT (absolute CLOCK_REALTIME deadline), EINTR (a caught signal),
 * EBADF (not a queue, wrong access mode), EBUSY (a second registration),
 * EFAULT (bad pointers), EMFILE (RLIMIT_MSGQUEUE).
 * (Another user's mq_unlink is not checked: its errno depends on the mode of
 * the namespace's mqueue root, which a host may have changed.)
 */
#include "tap.h"
#include <fcntl.h>
#include <mqueue.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static char name[64], name2[64];

static void deadline(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_nsec += ms * 1000000L;
	ts->tv_sec += ts->tv_nsec / 1000000000L;
	ts->tv_nsec %= 1000000000L;
}

static volatile siginfo_t got_info;
static volatile int got_sig;

static void on_sig(int s, siginfo_t *si, void *c)
{
	(void)c;
	got_sig = s;
	got_info = *si;
}

static void on_usr2(int s) { (void)s; }

static int read_knob(const char *path, char *out, size_t n)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, out, n - 1);
	close(fd);
	if (r < 0)
		return -1;
	out[r] = 0;
	return 0;
}

static int write_knob(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t r = write(fd, val, strlen(val));
	int e = errno;
	close(fd);
	errno = e;
	return r < 0 ? -1 : 0;
}

/* In a new IPC namespace: no queues of the parent's, its own limits. 0 when all held. */
static int in_new_ipcns(void)
{
	char v[32];
	if (unshare(CLONE_NEWIPC))
		return 2;
	if (!(mq_open(name, O_RDWR) == -1 && errno == ENOENT))
		return 3;
	if (write_knob("/proc/sys/fs/mqueue/msg_max", "20\n") || read_knob("/proc/sys/fs/mqueue/msg_max", v, sizeof(v))
	    || strcmp(v, "20\n"))
		return 4;
	if (!(write_knob("/proc/sys/fs/mqueue/msg_max", "0") == -1 && errno == EINVAL))
		return 5;
	if (!(write_knob("/proc/sys/fs/mqueue/msgsize_max", "127") == -1 && errno == EINVAL))
		return 6;
	if (setgid(65534) || setuid(65534))
		return 7;
	struct mq_attr at = {0, 15, 64, 0, {0}};
	mqd_t m = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &at);
	if (m < 0)
		return 8;
	at.mq_maxmsg = 21;
	if (!(mq_open(name2, O_RDWR | O_CREAT, 0600, &at) == -1 && errno == EINVAL))
		return 9;
	mq_unlink(name);
	return 0;
}

/* Hostile arguments to every mq call and futex_waitv, in a new IPC namespace (no queue of the
 * host is touched): every call returns (0 or an errno); none may kill the caller. */
static int fuzz(void)
{
	static char buf[70000];
	long pool[12];
	unsigned seed = 1;
	if (unshare(CLONE_NEWIPC))
		return 2;
	struct mq_attr at = {0, 4, 64, 0, {0}};
	mqd_t m = mq_open("/fz", O_RDWR | O_CREAT | O_NONBLOCK, 0600, &at);
	if (m < 0)
		return 3;
	struct timespec past = {0, 0};
	pool[0] = 0; pool[1] = 1; pool[2] = -1; pool[3] = 8; pool[4] = (long)buf; pool[5] = m;
	pool[6] = 0x7fffffffffffL; pool[7] = (long)(1UL << 63); pool[8] = (long)0x80000000L;
	pool[9] = 65536; pool[10] = (long)(buf + 69000); pool[11] = (long)&past;
	for (int i = 0; i < 3000; i++) {
		long a[6];
		for (int j = 0; j < 6; j++) {
			seed = seed * 1103515245u + 12345u;
			a[j] = pool[(seed >> 16) % 12];
			if ((seed >> 8) % 5 == 0)
				a[j] ^= (long)(seed & 0xff);
		}
		for (int j = 0; j < 64; j++)
			buf[j] = (char)(seed >> (j % 24));
		int nr = 240 + i % 7;
		if (nr == 246) {
			/* futex_waitv: always a past deadline, so nothing blocks. */
			syscall(449, a[0], a[1] & 0xff, a[2] & 3, &past, i % 2);
			continue;
		}
		if (nr == 242 || nr == 243)
			a[4] = (long)&past;
		if (nr == 240)
			a[1] &= ~(long)O_NONBLOCK, a[1] |= O_NONBLOCK;
		syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	}
	return 0;
}

int main(void)
{
	struct mq_attr a, o;
	char buf[8192 + 16];
	unsigned prio;
	struct timespec ts;
	mqd_t q, q2;
	int status;

	tap_plan(105);
	snprintf(name, sizeof(name), "/conf-mq-%d", getpid());
	snprintf(name2, sizeof(name2), "/conf-mq2-%d", getpid());
	mq_unlink(name);
	mq_unlink(name2);

	/* Names. */
	check_errno(mq_open("noslash", O_RDWR | O_CREAT, 0600, NULL), EINVAL, "glibc: a name without a leading slash");
	check_errno(syscall(SYS_mq_open, "a/b", O_RDWR | O_CREAT, 0600, NULL), EACCES, "a slash inside the name");
	check_errno(syscall(SYS_mq_open, ".", O_RDWR | O_CREAT, 0600, NULL), EACCES, "the name \".\"");
	check_errno(syscall(SYS_mq_open, "", O_RDWR | O_CREAT, 0600, NULL), ENOENT, "an empty name");
	check_errno(syscall(SYS_mq_open, NULL, O_RDWR, 0600, NULL), EFAULT, "a NULL name");
	char longname[300];
	longname[0] = '/';
	memset(longname + 1, 'x', 256);
	longname[257] = 0;
	check_errno(mq_open(longname, O_RDWR | O_CREAT, 0600, NULL), ENAMETOOLONG, "a 256-byte name");
	check_errno(mq_open(name, O_RDWR, 0), ENOENT, "no O_CREAT, no queue: ENOENT");
	check_errno(mq_unlink(name), ENOENT, "mq_unlink of a missing queue");

	/* Attributes. */
	q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, NULL);
	check(q >= 0, "mq_open O_CREAT|O_EXCL");
	check_ok(mq_getattr(q, &a), "mq_getattr");
	check(a.mq_maxmsg == 10 && a.mq_msgsize == 8192 && a.mq_curmsgs == 0 && a.mq_flags == 0,
	      "default attributes 10 x 8192 (got %ld x %ld)", a.mq_maxmsg, a.mq_msgsize);
	check_eq(fcntl(q, F_GETFD), FD_CLOEXEC, "a queue descriptor is close-on-exec");
	check_errno(mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, NULL), EEXIST, "O_CREAT|O_EXCL on an existing queue");
	struct stat sb;
	check(fstat(q, &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 0777) == 0600, "fstat: a regular file, mode 0600");
	memset(&a, 0, sizeof(a));
	a.mq_maxmsg = 0; a.mq_msgsize = 16;
	check_errno(mq_open(name2, O_RDWR | O_CREAT, 0600, &a), EINVAL, "mq_maxmsg 0");
	a.mq_maxmsg = -1;
	check_errno(mq_open(name2, O_RDWR | O_CREAT, 0600, &a), EINVAL, "mq_maxmsg -1");
	a.mq_maxmsg = 4; a.mq_msgsize = 0;
	check_errno(mq_open(name2, O_RDWR | O_CREAT, 0600, &a), EINVAL, "mq_msgsize 0");
	a.mq_maxmsg = 65537; a.mq_msgsize = 16;
	check_errno(mq_open(name2, O_RDWR | O_CREAT, 0600, &a), EINVAL, "mq_maxmsg past HARD_MSGMAX (root)");
	a.mq_maxmsg = 2; a.mq_msgsize = 16 * 1024 * 1024 + 1;
	check_errno(mq_open(name2, O_RDWR | O_CREAT, 0600, &a), EINVAL, "mq_msgsize past HARD_MSGSIZEMAX (root)");
	check_errno(syscall(SYS_mq_open, name2 + 1, O_RDWR | O_CREAT, 0600, (void *)8), EFAULT, "an unreadable attr");
	check_errno(mq_open(name2, O_RDWR, 0600, &a), ENOENT, "no queue was made by the failures");
	a.mq_maxmsg = 3; a.mq_msgsize = 16;
	q2 = mq_open(name2, O_RDWR | O_CREAT | O_NONBLOCK, 0644, &a);
	check(q2 >= 0, "mq_open with 3 x 16 and O_NONBLOCK");
	check(mq_getattr(q2, &o) == 0 && o.mq_maxmsg == 3 && o.mq_msgsize == 16 && o.mq_flags == O_NONBLOCK,
	      "attributes as asked, mq_flags O_NONBLOCK");

	/* Priority order, sizes, non-blocking. */
	check_ok(mq_send(q2, "low1", 4, 1), "send prio 1");
	check_ok(mq_send(q2, "high", 4, 9), "send prio 9");
	check_ok(mq_send(q2, "low2", 5, 1), "send prio 1 again");
	check_errno(mq_send(q2, "full", 4, 0), EAGAIN, "O_NONBLOCK send on a full queue");
	struct pollfd pfd = {q2, POLLIN | POLLOUT, 0};
	check(poll(&pfd, 1, 0) == 1 && pfd.revents == POLLIN, "poll on a full queue: POLLIN only (%#x)", pfd.revents);
	char line[128] = {0};
	check_eq(read(q2, line, sizeof(line)), 60, "read gives the status line");
	check_str(line, "QSIZE:13         NOTIFY:0     SIGNO:0     NOTIFY_PID:0     \n", "the status line");
	check_eq(read(q2, line, sizeof(line)), 0, "a second read is at its end");
	check_errno(mq_receive(q2, buf, 15, &prio), EMSGSIZE, "a buffer smaller than mq_msgsize");
	check_errno(mq_send(q2, buf, 17, 0), EMSGSIZE, "a message larger than mq_msgsize");
	check_errno(mq_send(q2, buf, 1, 32768), EINVAL, "priority MQ_PRIO_MAX");
	check_eq(mq_receive(q2, buf, sizeof(buf), &prio), 4, "receive");
	check(memcmp(buf, "high", 4) == 0 && prio == 9, "highest priority first");
	check_eq(mq_receive(q2, buf, sizeof(buf), &prio), 4, "receive");
	check(memcmp(buf, "low1", 4) == 0 && prio == 1, "then FIFO within a priority");
	check_eq(mq_receive(q2, buf, sizeof(buf), NULL), 5, "receive with no priority pointer");
	check_errno(mq_receive(q2, buf, sizeof(buf), &prio), EAGAIN, "O_NONBLOCK receive on an empty queue");
	pfd.revents = 0;
	check(poll(&pfd, 1, 0) == 1 && pfd.revents == POLLOUT, "poll on an empty queue: POLLOUT only");
	check_ok(mq_send(q2, "", 0, 0), "a zero-length message");
	check_eq(mq_receive(q2, buf, sizeof(buf), NULL), 0, "received as zero bytes");
	check_errno(syscall(SYS_mq_timedsend, q2, (void *)8, 4, 0, NULL), EFAULT, "an unreadable message");
	check_errno(syscall(SYS_mq_timedsend, q2, buf, (size_t)-1, 0, NULL), EMSGSIZE, "a huge length: EMSGSIZE");

	/* mq_getsetattr. */
	a.mq_flags = 0;
	check_ok(mq_setattr(q2, &a, &o), "mq_setattr clears O_NONBLOCK");
	check(o.mq_flags == O_NONBLOCK && mq_getattr(q2, &o) == 0 && o.mq_flags == 0 && o.mq_maxmsg == 3,
	      "the old flags came back; only the flags changed");
	a.mq_flags = O_NONBLOCK | O_APPEND;
	check_errno(mq_setattr(q2, &a, NULL), EINVAL, "mq_flags other than O_NONBLOCK");
	check_errno(syscall(SYS_mq_getsetattr, q2, (void *)8, NULL), EFAULT, "an unreadable new attr");
	check_errno(mq_getattr(0, &o), EBADF, "mq_getattr of a non-queue fd");
	check_errno(mq_getattr(-1, &o), EBADF, "mq_getattr of -1");

	/* Timeouts. */
	deadline(&ts, 30);
	check_errno(mq_timedreceive(q2, buf, sizeof(buf), NULL, &ts), ETIMEDOUT, "timed receive on an empty queue");
	ts.tv_nsec = 1000000000L;
	check_errno(mq_timedreceive(q2, buf, sizeof(buf), NULL, &ts), EINVAL, "tv_nsec 1e9");
	ts.tv_nsec = -1;
	check_errno(mq_timedsend(q2, "x", 1, 0, &ts), EINVAL, "tv_nsec -1 on send");
	check_errno(syscall(SYS_mq_timedreceive, q2, buf, sizeof(buf), NULL, (void *)8), EFAULT, "an unreadable timeout");
	for (int i = 0; i < 3; i++)
		mq_send(q2, "f", 1, 0);
	deadline(&ts, 30);
	check_errno(mq_timedsend(q2, "x", 1, 0, &ts), ETIMEDOUT, "timed send on a full queue");

	/* EBADF. */
	check_errno(mq_send(0, "x", 1, 0), EBADF, "mq_send to a non-queue fd");
	check_errno(mq_receive(99999, buf, sizeof(buf), NULL), EBADF, "mq_receive of a closed fd");
	mqd_t ro = mq_open(name2, O_RDONLY);
	check_errno(mq_send(ro, "x", 1, 0), EBADF, "mq_send on an O_RDONLY descriptor");
	mqd_t wo = mq_open(name2, O_WRONLY);
	check_errno(mq_receive(wo, buf, sizeof(buf), NULL), EBADF, "mq_receive on an O_WRONLY descriptor");
	check_errno(read(wo, line, sizeof(line)), EBADF, "read(2) on an O_WRONLY descriptor");

	/* A blocked sender (full queue) is woken by a receive in a child. */
	pid_t pid = fork();
	if (pid == 0) {
		usleep(50000);
		_exit(mq_receive(ro, buf, sizeof(buf), NULL) == 1 ? 0 : 1);
	}
	check_ok(mq_send(q2, "s", 1, 5), "a sender blocked on a full queue finishes after a receive");
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child received");
	check_eq(mq_receive(q2, buf, sizeof(buf), &prio), 1, "the moved-in message is there");
	check(prio == 5 && buf[0] == 's', "with its priority, first");
	while (mq_receive(ro, buf, sizeof(buf), NULL) >= 0 && mq_getattr(ro, &o) == 0 && o.mq_curmsgs)
		;

	/* A receiver blocked in a child is woken by a send; the queue outlives unlink and close. */
	pid = fork();
	if (pid == 0) {
		ssize_t n = mq_receive(q2, buf, sizeof(buf), &prio);
		_exit(n == 3 && prio == 7 && memcmp(buf, "hey", 3) == 0 ? 0 : 1);
	}
	usleep(50000);
	check_ok(mq_unlink(name2), "mq_unlink while open");
	check_errno(mq_open(name2, O_RDWR), ENOENT, "the name is gone");
	check_ok(mq_send(wo, "hey", 3, 7), "send through another descriptor of the unlinked queue");
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the blocked child received it");
	int d = dup(q2);
	mq_close(q2);
	check_ok(mq_send(d, "dup", 3, 0), "a dup of a closed descriptor still works");
	check_eq(mq_receive(d, buf, sizeof(buf), NULL), 3, "and receives");

	/* epoll. */
	int ep = epoll_create1(0);
	struct epoll_event ee = {EPOLLIN, {.u64 = 77}}, out;
	check_ok(epoll_ctl(ep, EPOLL_CTL_ADD, d, &ee), "epoll_ctl ADD a queue descriptor");
	check_eq(epoll_wait(ep, &out, 1, 0), 0, "epoll: not readable while empty");
	pid = fork();
	if (pid == 0) {
		usleep(30000);
		_exit(mq_send(d, "e", 1, 0));
	}
	check(epoll_wait(ep, &out, 1, 20000) == 1 && out.events == EPOLLIN && out.data.u64 == 77,
	      "epoll_wait wakes when another process sends");
	waitpid(pid, NULL, 0);
	mq_receive(d, buf, sizeof(buf), NULL);
	close(ep);

	/* /proc/sys/fs/mqueue and a new IPC namespace. */
	char knob[32] = {0};
	check(read_knob("/proc/sys/fs/mqueue/msg_max", knob, sizeof(knob)) == 0 && strcmp(knob, "10\n") == 0,
	      "/proc/sys/fs/mqueue/msg_max is 10");
	check(read_knob("/proc/sys/fs/mqueue/msgsize_default", knob, sizeof(knob)) == 0 && strcmp(knob, "8192\n") == 0,
	      "/proc/sys/fs/mqueue/msgsize_default is 8192");
	pid = fork();
	if (pid == 0)
		_exit(in_new_ipcns());
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "a new IPC namespace: no queues of ours, its own msg_max (child status %#x)", status);
	check(read_knob("/proc/sys/fs/mqueue/msg_max", knob, sizeof(knob)) == 0 && strcmp(knob, "10\n") == 0,
	      "our msg_max is still 10");
	check_errno(mq_open(name, O_RDONLY | O_CREAT | O_EXCL, 0600, NULL), EEXIST, "our queue is still there");

	/* EINTR. */
	struct sigaction sa = {0};
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	pid = fork();
	if (pid == 0) {
		usleep(50000);
		kill(getppid(), SIGUSR2);
		_exit(0);
	}
	check_errno(mq_receive(d, buf, sizeof(buf), NULL), EINTR, "a caught signal ends a blocked receive");
	waitpid(pid, NULL, 0);
	mq_close(d); mq_close(ro); mq_close(wo);

	/* mq_notify. */
	sa.sa_sigaction = on_sig;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR1, &sa, NULL);
	struct sigevent ev = {0};
	ev.sigev_notify = SIGEV_SIGNAL;
	ev.sigev_signo = SIGUSR1;
	ev.sigev_value.sival_int = 4242;
	check_ok(mq_notify(q, &ev), "mq_notify SIGEV_SIGNAL");
	check_errno(mq_notify(q, &ev), EBUSY, "a second registration: EBUSY");
	snprintf(line, sizeof(line), "QSIZE:0          NOTIFY:0     SIGNO:%-5d NOTIFY_PID:%-6d\n", SIGUSR1, getpid());
	char got[128] = {0};
	check(pread(q, got, sizeof(got), 0) > 0 && strcmp(got, line) == 0, "the status line names the registration: %s", got);
	pid = fork();
	if (pid == 0)
		_exit(mq_send(q, "n", 1, 0) == 0 ? 0 : 1);
	waitpid(pid, NULL, 0);
	for (int i = 0; i < 2000 && !got_sig; i++)
		usleep(1000);
	check(got_sig == SIGUSR1 && got_info.si_code == SI_MESGQ && got_info.si_value.sival_int == 4242
	      && got_info.si_pid == pid, "the signal came: SI_MESGQ, si_value, the sender's pid (code %d)", got_info.si_code);
	got_sig = 0;
	mq_receive(q, buf, sizeof(buf), NULL);
	mq_send(q, "n", 1, 0);
	usleep(20000);
	check(got_sig == 0, "a registration is used up by one notification");
	mq_receive(q, buf, sizeof(buf), NULL);
	ev.sigev_notify = SIGEV_NONE;
	check_ok(mq_notify(q, &ev), "mq_notify SIGEV_NONE");
	check_ok(mq_notify(q, NULL), "NULL removes it");
	ev.sigev_notify = SIGEV_SIGNAL;
	check_ok(mq_notify(q, &ev), "a new registration after the removal");
	pid = fork();
	if (pid == 0)
		_exit(syscall(SYS_mq_notify, q, &ev) == -1 && errno == EBUSY ? 0 : 1);
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "another process's registration: EBUSY");
	/* A receiver already waiting takes the message; the registration stays. */
	got_sig = 0;
	pid = fork();
	if (pid == 0)
		_exit(mq_receive(q, buf, sizeof(buf), NULL) == 1 ? 0 : 1);
	usleep(50000);
	mq_send(q, "w", 1, 0);
	waitpid(pid, &status, 0);
	usleep(20000);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0 && got_sig == 0, "a waiting receiver gets the message, no signal");
	check_errno(mq_notify(q, &ev), EBUSY, "and the registration is still there");
	int qd = dup(q);
	close(qd);
	check_ok(mq_notify(q, &ev), "closing a descriptor of the queue removed our registration");
	mq_notify(q, NULL);
	ev.sigev_notify = 99;
	check_errno(syscall(SYS_mq_notify, q, &ev), EINVAL, "an unknown sigev_notify");
	ev.sigev_notify = SIGEV_SIGNAL;
	ev.sigev_signo = 65;
	check_errno(syscall(SYS_mq_notify, q, &ev), EINVAL, "signal 65");
	check_errno(syscall(SYS_mq_notify, q, (void *)8), EFAULT, "an unreadable sigevent");
	ev.sigev_signo = SIGUSR1;
	check_errno(syscall(SYS_mq_notify, 0, &ev), EBADF, "mq_notify on a non-queue fd");

	/* Permissions and limits for another user; RLIMIT_MSGQUEUE. */
	pid = fork();
	if (pid == 0) {
		int ok = 1;
		if (setgid(65534) || setuid(65534))
			_exit(3);
		if (!(mq_open(name, O_RDONLY) == -1 && errno == EACCES))
			ok = 0;
		struct mq_attr big = {0, 11, 16, 0, {0}};
		if (!(mq_open(name2, O_RDWR | O_CREAT, 0600, &big) == -1 && errno == EINVAL))
			ok = 0;
		_exit(ok ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "another user: EACCES to open 0600, EINVAL past msg_max (status %#x)", status);
	pid = fork();
	if (pid == 0) {
		struct rlimit rl = {1000, 1000};
		struct mq_attr sm = {0, 1, 2000, 0, {0}};
		setrlimit(RLIMIT_MSGQUEUE, &rl);
		_exit(mq_open(name2, O_RDWR | O_CREAT, 0600, &sm) == -1 && errno == EMFILE ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "past RLIMIT_MSGQUEUE: EMFILE");
	check_errno(mq_open(name, 3), EINVAL, "O_ACCMODE 3 on an existing queue");
	mq_send(q, "lost", 4, 0);
	check_errno(syscall(SYS_mq_timedreceive, q, (void *)8, 8192, NULL, NULL), EFAULT, "an unwritable receive buffer");
	check(mq_getattr(q, &o) == 0 && o.mq_curmsgs == 0, "the message was taken all the same, as Linux");
	pid = fork();
	if (pid == 0) {
		struct rlimit rl = {3, 3};
		setrlimit(RLIMIT_NOFILE, &rl);
		_exit(mq_open(name2, O_RDWR | O_CREAT, 0600, NULL) == -1 && errno == EMFILE ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "no free descriptor: EMFILE");
	check_errno(mq_open(name2, O_RDWR), ENOENT, "and no queue was made");
	pid = fork();
	if (pid == 0) {
		alarm(60);
		_exit(fuzz());
	}
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "3000 calls with hostile arguments return (status %#x)", status);
	check_ok(mq_unlink(name), "mq_unlink");
	mq_close(q);
	return tap_done();
}
