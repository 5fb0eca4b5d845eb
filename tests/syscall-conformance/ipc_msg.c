/*
 * ipc_msg.c - System V message queues: msgget msgsnd msgrcv msgctl, /proc/sysvipc/msg,
 * and their IPC namespace.
 *
 * The program first enters a new IPC namespace (unshare(CLONE_NEWIPC), as root), so natively
 * and in the sandbox it starts from an empty set with Linux's default limits, whatever the
 * host has.  Blocking cases fork: a child blocks (full queue, no matching message) and the
 * parent wakes it (receive, send, IPC_RMID, a signal).  Where the parent must know that the
 * child is already parked (EIDRM), a child that came too late says so (EINVAL) and the round
 * is repeated with a longer pause: the checks never depend on timing to pass.
 */
#include "tap.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/wait.h>
#include <time.h>

#ifndef MSG_COPY
#define MSG_COPY 040000
#endif
#ifndef MSG_STAT_ANY
#define MSG_STAT_ANY 13
#endif

struct mbuf {
	long mtype;
	char mtext[9000];
};

static struct mbuf sb, rb;
static const key_t KEY = 0x5a5a0001;

static long snd(int id, long type, const char *text, size_t len, int flags)
{
	sb.mtype = type;
	memcpy(sb.mtext, text, len);
	return syscall(SYS_msgsnd, id, &sb, len, flags);
}

static long rcv(int id, size_t size, long type, int flags)
{
	memset(&rb, 0, sizeof(rb));
	return syscall(SYS_msgrcv, id, &rb, size, type, flags);
}

static int mstat(int id, struct msqid_ds *ds)
{
	return syscall(SYS_msgctl, id, IPC_STAT, ds);
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

static void on_usr1(int sig)
{
	(void)sig;
}

/* The child's errno as its exit code: 0 on success. */
static void child_exit(long r)
{
	_exit(r == -1 ? errno : 0);
}

/*
 * A child blocks in msgrcv (receiver) or msgsnd on a full queue (sender); the parent removes
 * the queue.  Returns the child's errno (EIDRM), repeating while the child came too late.
 */
static int removed_while_blocked(int sender)
{
	for (int round = 1; round <= 6; round++) {
		int id = msgget(IPC_PRIVATE, 0600);
		struct msqid_ds ds;
		mstat(id, &ds);
		ds.msg_qbytes = 8;
		syscall(SYS_msgctl, id, IPC_SET, &ds);
		if (sender)
			snd(id, 1, "12345678", 8, 0);
		pid_t pid = fork();
		if (pid == 0)
			child_exit(sender ? snd(id, 1, "x", 1, 0) : rcv(id, 100, 0, 0));
		pause_ms(50 << round);
		syscall(SYS_msgctl, id, IPC_RMID, NULL);
		int code = exit_code(pid);
		if (code != EINVAL)
			return code;
	}
	return -1;
}

int main(void)
{
	struct msqid_ds ds;
	struct msginfo mi;
	char buf[4096];
	int id, kid, r;
	pid_t pid;

	tap_plan(85);

	check_ok(unshare(CLONE_NEWIPC), "unshare(CLONE_NEWIPC) as root");

	/* An empty namespace with Linux's default limits. */
	check_eq(syscall(SYS_msgctl, 0, MSG_INFO, &mi), 0, "MSG_INFO in a new namespace returns 0 (no index in use)");
	check_eq(mi.msgpool, 0, "MSG_INFO msgpool (queues) is 0");
	check_eq(syscall(SYS_msgctl, 0, IPC_INFO, &mi), 0, "IPC_INFO returns 0");
	check(mi.msgmax == 8192 && mi.msgmnb == 16384 && mi.msgmni == 32000 && mi.msgssz == 16 &&
	      mi.msgseg == 0xffff && mi.msgpool == 512000 && mi.msgmap == 16384 && mi.msgtql == 16384,
	      "IPC_INFO: msgmax 8192 msgmnb 16384 msgmni 32000 msgssz 16 msgseg 0xffff msgpool msgmap msgtql");
	int fd = open("/proc/sysvipc/msg", O_RDONLY);
	r = read(fd, buf, sizeof(buf) - 1);
	buf[r > 0 ? r : 0] = 0;
	close(fd);
	check_str(buf, "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid"
		  "      stime      rtime      ctime\n", "/proc/sysvipc/msg: only its header");

	/* msgget */
	int priv = check_ok(msgget(IPC_PRIVATE, 0600), "msgget IPC_PRIVATE");
	check(msgget(IPC_PRIVATE, 0600) != priv, "a second IPC_PRIVATE queue is another queue");
	check_errno(msgget(KEY, 0600), ENOENT, "msgget of a missing key without IPC_CREAT is ENOENT");
	id = check_ok(msgget(KEY, IPC_CREAT | 0640), "msgget IPC_CREAT of a key");
	check_eq(msgget(KEY, IPC_CREAT | 0600), id, "msgget IPC_CREAT of an existing key returns it");
	check_eq(msgget(KEY, 0), id, "msgget of an existing key without flags returns it");
	check_errno(msgget(KEY, IPC_CREAT | IPC_EXCL | 0600), EEXIST, "IPC_CREAT|IPC_EXCL of an existing key is EEXIST");

	/* IPC_STAT of a new queue */
	time_t before = time(NULL);
	check_ok(mstat(id, &ds), "IPC_STAT");
	check(ds.msg_perm.__key == KEY && ds.msg_perm.uid == 0 && ds.msg_perm.cuid == 0 &&
	      ds.msg_perm.gid == 0 && ds.msg_perm.cgid == 0 && (ds.msg_perm.mode & 0777) == 0640,
	      "IPC_STAT msg_perm: key, uid, gid, cuid, cgid 0, mode 0640");
	check(ds.msg_qnum == 0 && ds.__msg_cbytes == 0 && ds.msg_qbytes == 16384 && ds.msg_lspid == 0 &&
	      ds.msg_lrpid == 0 && ds.msg_stime == 0 && ds.msg_rtime == 0,
	      "IPC_STAT of a new queue: empty, msg_qbytes 16384, no pids or times");
	check(ds.msg_ctime >= before - 5 && ds.msg_ctime <= before + 5, "msg_ctime is now");

	/* msgsnd and msgrcv by type */
	check_ok(snd(id, 1, "hello", 5, 0), "msgsnd type 1");
	check_ok(snd(id, 2, "world", 5, 0), "msgsnd type 2");
	check_ok(snd(id, 3, "!!!", 3, 0), "msgsnd type 3");
	check_ok(snd(id, 1, "again", 5, 0), "msgsnd type 1 again");
	mstat(id, &ds);
	check(ds.msg_qnum == 4 && ds.__msg_cbytes == 18 && ds.msg_lspid == getpid() && ds.msg_stime != 0 &&
	      ds.msg_lrpid == 0, "IPC_STAT: msg_qnum 4, msg_cbytes 18, msg_lspid is ours, msg_stime set");
	fd = open("/proc/sysvipc/msg", O_RDONLY);
	r = read(fd, buf, sizeof(buf) - 1);
	buf[r > 0 ? r : 0] = 0;
	close(fd);
	{
		char want[200];
		snprintf(want, sizeof(want), "%10d %10d  %4o  %10lu %10lu %5u %5u %5u %5u %5u %5u ", KEY, id, 0640,
			 18UL, 4UL, (unsigned)getpid(), 0U, 0U, 0U, 0U, 0U);
		check(strstr(buf, want) != NULL, "/proc/sysvipc/msg lists the queue: key id perms cbytes qnum pids ids");
	}
	check_eq(rcv(id, 100, 2, 0), 5, "msgrcv type 2 returns its size");
	check(rb.mtype == 2 && memcmp(rb.mtext, "world", 5) == 0, "msgrcv type 2 takes the type-2 message");
	check_eq(rcv(id, 100, -3, 0), 5, "msgrcv type -3 takes the lowest type <= 3");
	check(rb.mtype == 1 && memcmp(rb.mtext, "hello", 5) == 0, "... the oldest of type 1");
	check_eq(rcv(id, 100, 1, MSG_EXCEPT), 3, "MSG_EXCEPT 1 takes the first message not of type 1");
	check(rb.mtype == 3, "... type 3");
	check_errno(rcv(id, 100, 3, IPC_NOWAIT), ENOMSG, "msgrcv of a missing type with IPC_NOWAIT is ENOMSG");
	check_eq(rcv(id, 100, 0, 0), 5, "msgrcv type 0 takes the first message");
	check(rb.mtype == 1 && memcmp(rb.mtext, "again", 5) == 0, "... type 1 'again'");
	mstat(id, &ds);
	check(ds.msg_qnum == 0 && ds.__msg_cbytes == 0 && ds.msg_lrpid == getpid() && ds.msg_rtime != 0,
	      "IPC_STAT after receiving all: empty, msg_lrpid is ours, msg_rtime set");
	check_errno(rcv(id, 100, 0, IPC_NOWAIT), ENOMSG, "msgrcv of an empty queue with IPC_NOWAIT is ENOMSG");
	check_ok(snd(id, LONG_MAX, "max", 3, 0), "msgsnd type LONG_MAX");
	check_eq(rcv(id, 100, LONG_MIN, IPC_NOWAIT), 3, "msgrcv type LONG_MIN matches any type");
	check_ok(snd(id, 4, "", 0, 0), "msgsnd of an empty message");
	check_eq(rcv(id, 100, 4, IPC_NOWAIT), 0, "msgrcv of an empty message returns 0");

	/* E2BIG, MSG_NOERROR, MSG_COPY */
	check_ok(snd(id, 5, "0123456789", 10, 0), "msgsnd 10 bytes");
	check_errno(rcv(id, 4, 0, IPC_NOWAIT), E2BIG, "msgrcv into 4 bytes is E2BIG");
	mstat(id, &ds);
	check_eq(ds.msg_qnum, 1, "... and the message stays queued");
	check_errno(rcv(id, 100, 0, MSG_COPY), EINVAL, "MSG_COPY without IPC_NOWAIT is EINVAL");
	check_errno(rcv(id, 100, 0, MSG_COPY | IPC_NOWAIT | MSG_EXCEPT), EINVAL, "MSG_COPY with MSG_EXCEPT is EINVAL");
	check_eq(rcv(id, 100, 0, MSG_COPY | IPC_NOWAIT), 10, "MSG_COPY of message 0 copies it");
	check_errno(rcv(id, 100, 1, MSG_COPY | IPC_NOWAIT), ENOMSG, "MSG_COPY of message 1 (there is none) is ENOMSG");
	mstat(id, &ds);
	check_eq(ds.msg_qnum, 1, "... MSG_COPY leaves it queued");
	check_eq(rcv(id, 4, 0, MSG_NOERROR), 4, "MSG_NOERROR truncates to 4 bytes");
	check(memcmp(rb.mtext, "0123", 4) == 0 && rb.mtext[4] == 0, "... the first 4 bytes, nothing past them");
	mstat(id, &ds);
	check_eq(ds.msg_qnum, 0, "... and the truncated message is gone");

	/* EINVAL and EFAULT */
	check_errno(snd(id, 1, "x", 8193, 0), EINVAL, "msgsnd of 8193 bytes (> MSGMAX) is EINVAL");
	check_errno(snd(id, 0, "x", 1, 0), EINVAL, "msgsnd of type 0 is EINVAL");
	check_errno(snd(id, -5, "x", 1, 0), EINVAL, "msgsnd of a negative type is EINVAL");
	check_errno(snd(-1, 1, "x", 1, 0), EINVAL, "msgsnd to id -1 is EINVAL");
	check_errno(snd(id + 1000, 1, "x", 1, 0), EINVAL, "msgsnd to an unused id is EINVAL");
	check_errno(syscall(SYS_msgsnd, id, BAD_PTR, 1, 0), EFAULT, "msgsnd from a bad pointer is EFAULT");
	check_errno(syscall(SYS_msgrcv, id, &rb, -1L, 0, 0), EINVAL, "msgrcv of size -1 is EINVAL");
	check_errno(syscall(SYS_msgctl, id, 99, &ds), EINVAL, "msgctl of an unknown command is EINVAL");
	check_errno(syscall(SYS_msgctl, id, IPC_STAT | 0x100, &ds), EINVAL, "msgctl IPC_STAT|IPC_64 is EINVAL on x86-64");
	check_errno(syscall(SYS_msgctl, id, IPC_STAT, BAD_PTR), EFAULT, "IPC_STAT into a bad pointer is EFAULT");
	snd(id, 1, "lost", 4, 0);
	check_errno(syscall(SYS_msgrcv, id, BAD_PTR, 100, 0, 0), EFAULT, "msgrcv into a bad pointer is EFAULT");

	/* MSG_STAT / MSG_INFO */
	r = syscall(SYS_msgctl, id & 0x7fff, MSG_STAT, &ds);
	check_eq(r, id, "MSG_STAT of the queue's index returns its id");
	check_eq(syscall(SYS_msgctl, id & 0x7fff, MSG_STAT_ANY, &ds), id, "MSG_STAT_ANY too");
	check_eq(syscall(SYS_msgctl, 0, MSG_INFO, &mi), (id > priv ? id : priv) & 0x7fff,
		 "MSG_INFO returns the highest index in use");
	check_eq(mi.msgpool, 3, "MSG_INFO msgpool: 3 queues");

	/* A full queue: EAGAIN, and a blocked sender woken by a receive. */
	mstat(id, &ds);
	ds.msg_qbytes = 100;
	ds.msg_perm.mode = 0600;
	check_ok(syscall(SYS_msgctl, id, IPC_SET, &ds), "IPC_SET msg_qbytes 100, mode 0600");
	mstat(id, &ds);
	check(ds.msg_qbytes == 100 && (ds.msg_perm.mode & 0777) == 0600, "IPC_STAT shows them");
	check_ok(snd(id, 1, buf, 60, 0), "msgsnd 60 bytes into 100 (the queue is empty: the EFAULT lost its message)");
	check_errno(snd(id, 1, buf, 60, IPC_NOWAIT), EAGAIN, "msgsnd of 60 more with IPC_NOWAIT is EAGAIN");
	pid = fork();
	if (pid == 0)
		child_exit(snd(id, 9, "blocked!", 60, 0));
	pause_ms(100);
	check_eq(waitpid(pid, &r, WNOHANG), 0, "a child's msgsnd into the full queue blocks");
	check_eq(rcv(id, 100, 1, 0), 60, "msgrcv makes room");
	check_eq(exit_code(pid), 0, "... and the blocked sender completes");
	mstat(id, &ds);
	check(ds.msg_qnum == 1 && ds.msg_lspid == pid, "the child's message is queued, msg_lspid is the child");

	/* A blocked receiver woken by a send of its type. */
	pid = fork();
	if (pid == 0) {
		long n = rcv(id, 100, 77, 0);
		_exit(n == 3 && rb.mtype == 77 && memcmp(rb.mtext, "abc", 3) == 0 ? 0 : 1);
	}
	pause_ms(100);
	snd(id, 76, "no", 2, 0);
	check_eq(waitpid(pid, &r, WNOHANG), 0, "a receiver of type 77 is not woken by type 76");
	snd(id, 77, "abc", 3, 0);
	check_eq(exit_code(pid), 0, "a blocked msgrcv gets the message sent for it");
	mstat(id, &ds);
	check(ds.msg_lrpid == pid && ds.msg_qnum == 2, "msg_lrpid is the child; type 76 still queued");

	/* EINTR: even with SA_RESTART (msgrcv is never restarted after a handler). */
	pid = fork();
	if (pid == 0) {
		struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
		sigaction(SIGUSR1, &sa, NULL);
		child_exit(rcv(id, 100, 1234, 0));
	}
	do {
		pause_ms(50);
		kill(pid, SIGUSR1);
	} while (waitpid(pid, &r, WNOHANG) == 0);
	check(WIFEXITED(r) && WEXITSTATUS(r) == EINTR, "a signal handler interrupts msgrcv: EINTR despite SA_RESTART");

	/* Permissions, as another user. */
	pid = fork();
	if (pid == 0) {
		int ok = 1;
		if (setgid(65534) || setuid(65534))
			_exit(100);
		ok &= msgget(KEY, 0400) == -1 && errno == EACCES;
		ok &= msgget(KEY, 0) == id;
		ok &= snd(id, 1, "x", 1, IPC_NOWAIT) == -1 && errno == EACCES;
		ok &= rcv(id, 100, 0, IPC_NOWAIT) == -1 && errno == EACCES;
		ok &= mstat(id, &ds) == -1 && errno == EACCES;
		ok &= syscall(SYS_msgctl, id, IPC_RMID, NULL) == -1 && errno == EPERM;
		kid = msgget(IPC_PRIVATE, 0600);
		mstat(kid, &ds);
		ok &= ds.msg_perm.uid == 65534 && ds.msg_perm.cuid == 65534;
		ds.msg_qbytes = 16385;
		ok &= syscall(SYS_msgctl, kid, IPC_SET, &ds) == -1 && errno == EPERM;
		ds.msg_qbytes = 1000;
		ok &= syscall(SYS_msgctl, kid, IPC_SET, &ds) == 0;
		ok &= syscall(SYS_msgctl, kid, IPC_RMID, NULL) == 0;
		_exit(ok ? 0 : 1);
	}
	check_eq(exit_code(pid), 0, "as uid 65534: EACCES for msgget 0400/msgsnd/msgrcv/IPC_STAT, EPERM for "
		 "IPC_RMID and msg_qbytes > 16384; its own queue is its to set and remove");

	/* Another IPC namespace sees none of these. */
	pid = fork();
	if (pid == 0) {
		int ok = unshare(CLONE_NEWIPC) == 0;
		ok &= msgget(KEY, 0) == -1 && errno == ENOENT;
		ok &= mstat(id, &ds) == -1 && errno == EINVAL;
		ok &= syscall(SYS_msgctl, 0, MSG_INFO, &mi) == 0 && mi.msgpool == 0;
		ok &= msgget(KEY, IPC_CREAT | 0600) >= 0;
		_exit(ok ? 0 : 1);
	}
	check_eq(exit_code(pid), 0, "after unshare(CLONE_NEWIPC) a child sees no queue, and may make its own key");
	check_eq(msgget(KEY, 0), id, "the parent's key is still its queue");

	/* IPC_RMID, and waiters get EIDRM. */
	check_ok(syscall(SYS_msgctl, id, IPC_RMID, NULL), "IPC_RMID");
	check_errno(mstat(id, &ds), EINVAL, "IPC_STAT of a removed queue is EINVAL");
	check_errno(msgget(KEY, 0), ENOENT, "its key is gone");
	check(msgget(KEY, IPC_CREAT | 0600) != id, "a new queue for the key has a new id");
	check_eq(removed_while_blocked(0), EIDRM, "a blocked msgrcv fails with EIDRM when the queue is removed");
	check_eq(removed_while_blocked(1), EIDRM, "a blocked msgsnd fails with EIDRM when the queue is removed");
	return tap_done();
}
