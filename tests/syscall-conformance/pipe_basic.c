/*
 * pipe_basic: pipe pipe2 and the pipe semantics of read/write/fcntl/ioctl.
 *
 * Success paths: data round trip; pipe2 O_CLOEXEC / O_NONBLOCK flags read
 * back through F_GETFD / F_GETFL; EOF (read 0) once every writer is closed,
 * also when a forked child held a copy and exited; FIONREAD counts the
 * unread bytes; F_GETPIPE_SZ is 65536 by default, F_SETPIPE_SZ rounds up
 * to a power-of-two number of pages and a full pipe holds exactly that
 * many bytes; writes of at most PIPE_BUF (4096) bytes from several
 * processes are never interleaved; a non-blocking write to a pipe with
 * less than PIPE_BUF room writes nothing (EAGAIN), a larger one writes
 * what fits in the partly filled last page.  Errno paths: EAGAIN (O_NONBLOCK read on an empty pipe,
 * write on a full one), EPIPE plus SIGPIPE (write with no reader; the
 * signal blocked and then read back with sigtimedwait, and as the default
 * action killing a child), EBADF (read on the write end, write on the
 * read end), EINVAL (pipe2 with a bad flag, F_SETPIPE_SZ below the
 * current content), EFAULT (pipe to a bad pointer).
 */
#include "tap.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>

#define CHUNK 4096

int main(void)
{
	int p[2], q[2], n;
	char buf[65536 * 2];
	sigset_t s;
	struct timespec zero = {0, 0};
	siginfo_t si;
	pid_t pid;
	int st;

	tap_plan(34);

	/* --- round trip, flags --- */
	check_ok(syscall(SYS_pipe, p), "pipe");
	check_eq(write(p[1], "hello", 5), 5, "write 5 bytes");
	n = -1;
	check_eq(ioctl(p[0], FIONREAD, &n), 0, "FIONREAD");
	check_eq(n, 5, "FIONREAD counts 5 unread bytes");
	memset(buf, 0, 8);
	check_eq(read(p[0], buf, sizeof(buf)), 5, "read returns the 5 bytes");
	check_mem(buf, "hello", 5, "the bytes are hello");
	check_eq(fcntl(p[0], F_GETFD), 0, "pipe: no FD_CLOEXEC");
	check_eq(fcntl(p[0], F_GETFL) & O_ACCMODE, O_RDONLY, "read end is O_RDONLY");
	check_eq(fcntl(p[1], F_GETFL) & O_ACCMODE, O_WRONLY, "write end is O_WRONLY");
	check_errno(read(p[1], buf, 1), EBADF, "read on the write end is EBADF");
	check_errno(write(p[0], "x", 1), EBADF, "write on the read end is EBADF");
	check_ok(syscall(SYS_pipe2, q, O_CLOEXEC | O_NONBLOCK), "pipe2 O_CLOEXEC|O_NONBLOCK");
	check(fcntl(q[0], F_GETFD) == FD_CLOEXEC && fcntl(q[1], F_GETFD) == FD_CLOEXEC, "both ends FD_CLOEXEC");
	check((fcntl(q[0], F_GETFL) & O_NONBLOCK) && (fcntl(q[1], F_GETFL) & O_NONBLOCK), "both ends O_NONBLOCK");
	check_errno(syscall(SYS_pipe2, q, 0x1), EINVAL, "pipe2 with flag 1 is EINVAL");
	check_errno(syscall(SYS_pipe, BAD_PTR), EFAULT, "pipe to a bad pointer is EFAULT");

	/* --- O_NONBLOCK EAGAIN, capacity, F_GETPIPE_SZ/F_SETPIPE_SZ --- */
	check_errno(read(q[0], buf, 1), EAGAIN, "non-blocking read of an empty pipe is EAGAIN");
	check_eq(fcntl(q[1], F_GETPIPE_SZ), 65536, "F_GETPIPE_SZ is 65536 by default");
	{
		long total = 0, w;
		memset(buf, 'a', sizeof(buf));
		while ((w = write(q[1], buf, CHUNK)) > 0)
			total += w;
		check_eq(total, 65536, "a full pipe holds 65536 bytes");
		check_errno(write(q[1], buf, 1), EAGAIN, "non-blocking write to a full pipe is EAGAIN");
		check_errno(fcntl(q[1], F_SETPIPE_SZ, 4096), EBUSY, "F_SETPIPE_SZ below the content is EBUSY");
		while (read(q[0], buf, sizeof(buf)) > 0)
			;
	}
	check_eq(fcntl(q[1], F_SETPIPE_SZ, 5000), 8192, "F_SETPIPE_SZ 5000 rounds up to 8192");
	check_eq(fcntl(q[0], F_GETPIPE_SZ), 8192, "F_GETPIPE_SZ reads 8192 from the other end");
	{
		long w = write(q[1], buf, 6000);
		check_eq(w, 6000, "6000 bytes fit in 8192");
		check_errno(write(q[1], buf, 4096), EAGAIN, "a PIPE_BUF write with 2192 bytes free is EAGAIN (atomic)");
		/* Linux counts a pipe in pages: with no free page left, only the
		 * write's tail (5000 % 4096 = 904 bytes) merges into the partly
		 * filled last page. */
		check_eq(write(q[1], buf, 5000), 904, "a bigger non-blocking write writes what fits in the last page");
		while (read(q[0], buf, sizeof(buf)) > 0)
			;
	}
	close(q[0]);
	close(q[1]);

	/* --- EOF --- */
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		if (write(p[1], "bye", 3) != 3)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	check_eq(read(p[0], buf, sizeof(buf)), 3, "read the child's 3 bytes");
	check_eq(read(p[0], buf, sizeof(buf)), 0, "EOF once the last writer (the child) is gone");
	waitpid(pid, &st, 0);
	close(p[0]);

	/* --- EPIPE and SIGPIPE --- */
	pipe(p);
	close(p[0]);
	sigemptyset(&s);
	sigaddset(&s, SIGPIPE);
	sigprocmask(SIG_BLOCK, &s, NULL);
	check_errno(write(p[1], "x", 1), EPIPE, "write with no reader is EPIPE");
	memset(&si, 0, sizeof(si));
	check_eq(sigtimedwait(&s, &si, &zero), SIGPIPE, "and raises SIGPIPE");
	check(si.si_code == SI_USER && si.si_pid == getpid(), "SIGPIPE's si_code is SI_USER from ourselves");
	sigprocmask(SIG_UNBLOCK, &s, NULL);
	pid = fork();
	if (pid == 0) {
		signal(SIGPIPE, SIG_DFL);
		if (write(p[1], "x", 1) < 0)
			_exit(2);
		_exit(3);
	}
	waitpid(pid, &st, 0);
	check(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE, "SIGPIPE's default action kills the writer");
	close(p[1]);

	/* --- PIPE_BUF atomicity with 4 writers --- */
	pipe(p);
	for (int w = 0; w < 4; w++) {
		if (fork() == 0) {
			char chunk[CHUNK];
			close(p[0]);
			memset(chunk, 'A' + w, CHUNK);
			for (int i = 0; i < 32; i++)
				if (write(p[1], chunk, CHUNK) != CHUNK)
					_exit(1);
			_exit(0);
		}
	}
	close(p[1]);
	{
		int chunks = 0, torn = 0;
		long got = 0, r;
		static char all[4 * 32 * CHUNK];
		while ((r = read(p[0], all + got, sizeof(all) - got)) > 0)
			got += r;
		for (long off = 0; off + CHUNK <= got; off += CHUNK) {
			chunks++;
			for (int i = 1; i < CHUNK; i++)
				if (all[off + i] != all[off]) {
					torn++;
					break;
				}
		}
		check_eq(got, 4L * 32 * CHUNK, "4 writers x 32 x 4096 bytes all arrive");
		check(chunks == 128 && torn == 0, "no 4096-byte (PIPE_BUF) write is interleaved with another");
	}
	while (wait(NULL) > 0)
		;
	close(p[0]);
	return tap_done();
}
