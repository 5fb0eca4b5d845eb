/*
 * xfer_partial: a signal arriving in the middle of a transfer that has
 * already moved bytes.
 *
 * Linux's rule (pipe_write, unix_stream_sendmsg/recvmsg, do_iter_readv_writev):
 * a blocking transfer interrupted after it moved bytes returns that count --
 * with or without SA_RESTART -- and only one that moved nothing fails with
 * EINTR (or is restarted, under SA_RESTART).  So a 200,000-byte write to a
 * 64 KiB pipe that nobody reads, interrupted by SIGALRM, returns 65,536, and a
 * writer that loops on the rest delivers exactly 200,000 bytes.  Checked for
 * write and writev on a pipe (with and without SA_RESTART), send on a unix
 * stream socket, recv(MSG_WAITALL) on the read side (the bytes that arrived
 * win), a read that moved nothing (EINTR / restart), and nanosleep /
 * clock_nanosleep reporting the time left.
 */
#include "tap.h"
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#define TOTAL 200000
#define PIPE_CAP 65536

static volatile int hits;
static void handler(int sig) { (void)sig; hits++; }

static void set(int sig, int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigaction(sig, &sa, NULL);
}

/* SIGALRM once, `ms` from now. */
static void alarm_ms(long ms)
{
	struct itimerval it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000}};
	setitimer(ITIMER_REAL, &it, NULL);
}

static char buf[TOTAL];

/* A child reading fd until EOF; it exits with 0 if it got exactly `want` bytes of the pattern. */
static pid_t drainer(int fd, int other, long want)
{
	pid_t pid = fork();
	if (pid == 0) {
		static char in[8192];
		long got = 0;
		int bad = 0;
		close(other);
		for (;;) {
			ssize_t n = read(fd, in, sizeof(in));
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			for (ssize_t i = 0; i < n; i++)
				if (in[i] != (char)((got + i) % 251))
					bad = 1;
			got += n;
		}
		_exit(got == want && !bad ? 0 : 1);
	}
	return pid;
}

static int reap(pid_t pid)
{
	int st = -1;
	while (waitpid(pid, &st, 0) == -1 && errno == EINTR)
		;
	return st;
}

/* Write what is left of buf[from..TOTAL) to fd, looping on short writes. */
static long finish(int fd, long from)
{
	while (from < TOTAL) {
		ssize_t n = write(fd, buf + from, TOTAL - from);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		from += n;
	}
	return from;
}

/* One interrupted pipe write (writev if `vec`); returns what the first call returned. */
static long pipe_case(int flags, int vec, const char *what)
{
	int p[2];
	long first;
	pid_t r;

	if (pipe(p) == -1)
		return -2;
	set(SIGALRM, flags);
	hits = 0;
	alarm_ms(100);
	if (vec) {
		struct iovec iov[3] = {{buf, 70000}, {buf + 70000, 60000}, {buf + 130000, TOTAL - 130000}};
		first = writev(p[1], iov, 3);
	} else {
		first = write(p[1], buf, TOTAL);
	}
	check_eq(first, PIPE_CAP, "%s: interrupted after the pipe filled, it returns the bytes written", what);
	check(hits == 1, "%s: the handler ran", what);
	r = drainer(p[0], p[1], TOTAL);
	close(p[0]);
	check_eq(finish(p[1], first < 0 ? 0 : first), TOTAL, "%s: the writer finishes the rest", what);
	close(p[1]);
	check_eq(reap(r), 0, "%s: the reader got exactly %d bytes, in order", what, TOTAL);
	return first;
}

int main(void)
{
	int p[2], sv[2];
	char c;
	pid_t r;

	tap_plan(32);
	for (int i = 0; i < TOTAL; i++)
		buf[i] = (char)(i % 251);

	pipe_case(0, 0, "write, no SA_RESTART");
	pipe_case(SA_RESTART, 0, "write, SA_RESTART");
	pipe_case(0, 1, "writev, no SA_RESTART");

	/* --- a write that moved nothing: EINTR, or restarted with SA_RESTART --- */
	pipe(p);
	check_eq(write(p[1], buf, PIPE_CAP), PIPE_CAP, "fill a pipe");
	set(SIGALRM, 0);
	alarm_ms(100);
	check_errno(write(p[1], buf, 10), EINTR, "a write to a full pipe that moved nothing is EINTR");
	close(p[0]);
	close(p[1]);

	/* --- read side: nothing moved is EINTR --- */
	pipe(p);
	alarm_ms(100);
	check_errno(read(p[0], &c, 1), EINTR, "a pipe read that moved nothing is EINTR");
	close(p[0]);
	close(p[1]);

	/* --- unix stream socket: send interrupted after a partial transfer --- */
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	{
		int small = 4096;
		long first;
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
		set(SIGALRM, SA_RESTART);
		hits = 0;
		alarm_ms(100);
		first = send(sv[0], buf, TOTAL, 0);
		check(first > 0 && first < TOTAL, "send on a unix stream socket: interrupted mid-way, a partial count (%ld)", first);
		r = drainer(sv[1], sv[0], TOTAL);
		close(sv[1]);
		check_eq(finish(sv[0], first < 0 ? 0 : first), TOTAL, "send: the writer finishes the rest");
		shutdown(sv[0], SHUT_WR);
		check_eq(reap(r), 0, "send: the peer got exactly %d bytes, in order", TOTAL);
		close(sv[0]);
	}

	/* --- unix stream socket: recv(MSG_WAITALL) interrupted after some bytes arrived --- */
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	{
		static char in[1000];
		check_eq(write(sv[1], buf, 100), 100, "put 100 bytes in a socket");
		set(SIGALRM, SA_RESTART);
		alarm_ms(100);
		check_eq(recv(sv[0], in, sizeof(in), MSG_WAITALL), 100,
			 "recv(MSG_WAITALL) interrupted with 100 of 1000 bytes returns 100 (even with SA_RESTART)");
		check_mem(in, buf, 100, "recv(MSG_WAITALL): the 100 bytes are the ones written");
		close(sv[0]);
		close(sv[1]);
	}

	/* --- a peer closed with data unread: its sk_err is ECONNRESET (unix_release_sock) --- */
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	check_eq(write(sv[1], "abc", 3), 3, "queue 3 bytes the peer will never read");
	close(sv[0]);
	check_errno(send(sv[1], "d", 1, MSG_NOSIGNAL), EPIPE, "a new send after the peer closed: EPIPE (shutdown first)");
	close(sv[1]);
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	{
		int small = 4096;
		ssize_t n;
		pid_t kid;
		setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
		kid = fork();
		if (kid == 0) {
			struct timespec ts = {0, 100 * 1000000L};
			close(sv[1]);
			nanosleep(&ts, NULL);
			_exit(0);          /* closes sv[0] with all it was sent unread */
		}
		close(sv[0]);
		int e;
		while ((n = send(sv[1], buf, 1000, MSG_NOSIGNAL)) > 0)
			;
		e = n == -1 ? errno : 0;
		check_eq(e, ECONNRESET, "a send blocked for room when the peer closes with data unread: ECONNRESET");
		reap(kid);
	}
	close(sv[1]);
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	write(sv[1], "abc", 3);
	close(sv[0]);
	check_errno(read(sv[1], &c, 1), ECONNRESET, "read after the peer closed with unread data: ECONNRESET");
	check_eq(read(sv[1], &c, 1), 0, "then EOF");
	close(sv[1]);

	/* --- nanosleep / clock_nanosleep: the time left --- */
	{
		struct timespec req = {2, 0}, rem = {-1, -1};
		long left_ms;
		int rc;

		set(SIGALRM, SA_RESTART);
		alarm_ms(100);
		check_errno(nanosleep(&req, &rem), EINTR, "nanosleep(2 s) interrupted is EINTR, also with SA_RESTART");
		left_ms = rem.tv_sec * 1000 + rem.tv_nsec / 1000000;
		check(left_ms > 500 && left_ms < 2000 && rem.tv_nsec >= 0 && rem.tv_nsec < 1000000000,
		      "nanosleep: rem is the time left, below 2 s (%ld ms)", left_ms);

		rem.tv_sec = rem.tv_nsec = -1;
		alarm_ms(100);
		rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
		check_eq(rc, EINTR, "clock_nanosleep(relative) interrupted returns EINTR");
		left_ms = rem.tv_sec * 1000 + rem.tv_nsec / 1000000;
		check(left_ms > 500 && left_ms < 2000, "clock_nanosleep: rem is the time left (%ld ms)", left_ms);

		struct timespec now, until;
		clock_gettime(CLOCK_MONOTONIC, &now);
		until.tv_sec = now.tv_sec + 2;
		until.tv_nsec = now.tv_nsec;
		rem.tv_sec = rem.tv_nsec = -7;
		alarm_ms(100);
		rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, &rem);
		check_eq(rc, EINTR, "clock_nanosleep(TIMER_ABSTIME) interrupted returns EINTR");
		check(rem.tv_sec == -7 && rem.tv_nsec == -7, "clock_nanosleep(TIMER_ABSTIME) leaves rem alone");
	}
	return tap_done();
}
