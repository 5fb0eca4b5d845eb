/*
 * sig_restart: a signal arriving while a syscall blocks.
 *
 * A helper child sends the signal 50 ms after the parent blocked, then
 * (for the pipe cases) writes one byte 50 ms later.  Checked: a blocking
 * pipe read is restarted after an SA_RESTART handler (the read returns the
 * byte written later) and fails with EINTR without SA_RESTART; a signal
 * whose default action is to ignore (SIGWINCH) does not interrupt it at
 * all; wait4 restarts with SA_RESTART; nanosleep, poll and select return
 * EINTR even with SA_RESTART (Linux never restarts them after a handler),
 * nanosleep reporting the time left; sigsuspend/pause return EINTR;
 * a handler that returns lets the blocked write on a full pipe restart.
 */
#include "tap.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>

static volatile int hits;
static void handler(int sig) { (void)sig; hits++; }

static void nap_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* A child that signals us after `ms`, then writes one byte to wfd (if >= 0) after `ms` more. */
static pid_t kicker(int sig, long ms, int wfd)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		nap_ms(ms);
		kill(parent, sig);
		if (wfd >= 0) {
			nap_ms(ms);
			if (write(wfd, "x", 1) != 1)
				_exit(1);
		}
		_exit(0);
	}
	return pid;
}

static void reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
		;
}

static void set(int sig, int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigaction(sig, &sa, NULL);
}

int main(void)
{
	int p[2];
	char c = 0;
	pid_t k;

	tap_plan(16);

	/* --- pipe read, SA_RESTART --- */
	pipe(p);
	set(SIGUSR1, SA_RESTART);
	hits = 0;
	k = kicker(SIGUSR1, 50, p[1]);
	check_eq(read(p[0], &c, 1), 1, "SA_RESTART: the blocking pipe read is restarted and returns the byte");
	check(hits == 1 && c == 'x', "the handler ran once and the byte is 'x'");
	reap(k);

	/* --- pipe read, no SA_RESTART --- */
	set(SIGUSR1, 0);
	hits = 0;
	k = kicker(SIGUSR1, 50, p[1]);
	check_errno(read(p[0], &c, 1), EINTR, "without SA_RESTART the pipe read fails with EINTR");
	check_eq(hits, 1, "the handler ran once");
	check_eq(read(p[0], &c, 1), 1, "the byte written later is still read");
	reap(k);

	/* --- default-ignored signal does not interrupt --- */
	signal(SIGWINCH, SIG_DFL);
	k = kicker(SIGWINCH, 50, p[1]);
	check_eq(read(p[0], &c, 1), 1, "SIGWINCH (default: ignore) does not interrupt the read");
	reap(k);

	/* --- wait4 restarts --- */
	set(SIGUSR1, SA_RESTART);
	hits = 0;
	{
		pid_t child = fork();
		if (child == 0) {
			nap_ms(150);
			_exit(4);
		}
		k = kicker(SIGUSR1, 50, -1);
		int st = 0;
		check_eq(waitpid(child, &st, 0), child, "SA_RESTART: wait4 on a child is restarted");
		check(hits == 1 && WEXITSTATUS(st) == 4, "the handler ran and the status arrived");
		reap(k);
	}

	/* --- never restarted after a handler, even with SA_RESTART --- */
	{
		struct timespec ts = {5, 0}, rem = {0, 0};
		hits = 0;
		k = kicker(SIGUSR1, 50, -1);
		check_errno(nanosleep(&ts, &rem), EINTR, "nanosleep is EINTR even with SA_RESTART");
		check(hits == 1 && rem.tv_sec >= 3 && rem.tv_sec <= 5, "and reports the time left");
		if (!(hits == 1 && rem.tv_sec >= 3 && rem.tv_sec <= 5))
			tap_note("hits=%d rem=%ld.%09ld", hits, (long)rem.tv_sec, rem.tv_nsec);
		reap(k);
	}
	{
		struct pollfd pfd = {p[0], POLLIN, 0};
		hits = 0;
		k = kicker(SIGUSR1, 50, -1);
		check_errno(poll(&pfd, 1, 5000), EINTR, "poll is EINTR even with SA_RESTART");
		reap(k);
	}
	{
		fd_set r;
		struct timeval tv = {5, 0};
		FD_ZERO(&r);
		FD_SET(p[0], &r);
		k = kicker(SIGUSR1, 50, -1);
		check_errno(select(p[0] + 1, &r, NULL, NULL, &tv), EINTR, "select is EINTR even with SA_RESTART");
		reap(k);
	}
	{
		sigset_t none;
		sigemptyset(&none);
		hits = 0;
		k = kicker(SIGUSR1, 50, -1);
		check_errno(sigsuspend(&none), EINTR, "sigsuspend is EINTR after the handler");
		check_eq(hits, 1, "and the handler ran");
		reap(k);
		k = kicker(SIGUSR1, 50, -1);
		check_errno(pause(), EINTR, "pause is EINTR after the handler");
		reap(k);
	}

	/* --- a write blocked on a full pipe restarts --- */
	{
		char buf[4096];
		int n = 0;
		memset(buf, 'y', sizeof(buf));
		fcntl(p[1], F_SETFL, O_NONBLOCK);
		while (write(p[1], buf, sizeof(buf)) > 0)
			n++;
		fcntl(p[1], F_SETFL, 0);
		pid_t drain = fork();
		if (drain == 0) {
			nap_ms(100);
			char big[8192];
			for (int i = 0; i < n + 1; i++)
				if (read(p[0], big, sizeof(buf)) <= 0)
					_exit(1);
			_exit(0);
		}
		hits = 0;
		k = kicker(SIGUSR1, 50, -1);
		check_eq(write(p[1], buf, sizeof(buf)), (long)sizeof(buf),
			 "SA_RESTART: a write blocked on a full pipe completes after the handler");
		reap(k);
		reap(drain);
	}
	return tap_done();
}
