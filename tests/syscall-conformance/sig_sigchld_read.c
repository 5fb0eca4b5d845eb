/*
 * sig_sigchld_read: the shell's command-substitution pattern, 300 times.
 *
 * With a SIGCHLD handler installed (no SA_RESTART), the parent forks a
 * child that writes 6 bytes into a pipe and exits at once, while the
 * parent reads the pipe until EOF (retrying on EINTR: the SIGCHLD often
 * interrupts the read) and then reaps the child.  Every byte must arrive,
 * every child must be reaped with status 0, and the handler must have run
 * once per child (SIGCHLD is not queued, so "at most once per child, at
 * least once" is what is checked).  This is what busybox sh does for
 * `x=$(echo hello)`; a Sentry race between a child's exit and the
 * parent's signal delivery shows up here as a hang.
 */
#include "tap.h"
#include <signal.h>
#include <sys/wait.h>

#define ROUNDS 300

static volatile int chld;
static void on_chld(int sig) { (void)sig; chld++; }

int main(void)
{
	struct sigaction sa;
	long bytes = 0;
	int reaped_ok = 0, eintr = 0;

	tap_plan(3);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_chld;
	sigaction(SIGCHLD, &sa, NULL);
	for (int i = 0; i < ROUNDS; i++) {
		int p[2], st = -1;
		char buf[128];
		ssize_t n;

		if (pipe(p))
			break;
		pid_t c = fork();
		if (c == 0) {
			close(p[0]);
			if (write(p[1], "hello\n", 6) != 6)
				_exit(1);
			_exit(0);
		}
		close(p[1]);
		while ((n = read(p[0], buf, sizeof(buf))) != 0) {
			if (n < 0) {
				if (errno != EINTR)
					break;
				eintr++;
				continue;
			}
			bytes += n;
		}
		close(p[0]);
		while (waitpid(c, &st, 0) == -1 && errno == EINTR)
			;
		if (st == 0)
			reaped_ok++;
	}
	check_eq(bytes, ROUNDS * 6L, "every child's 6 bytes arrived");
	check_eq(reaped_ok, ROUNDS, "every child was reaped with status 0");
	check(chld >= 1 && chld <= ROUNDS, "the SIGCHLD handler ran (%d times)", chld);
	tap_note("reads interrupted by SIGCHLD: %d", eintr);
	return tap_done();
}
