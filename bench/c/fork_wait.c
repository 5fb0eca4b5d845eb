/*
 * fork_wait: fork + _exit + wait4 latency.
 *
 *   fork_wait N [MIB]  N rounds of: fork(); the child _exit(0)s at once; the
 *                    parent wait4()s for it.  Prints us_per_op=<float>
 *                    measured with CLOCK_MONOTONIC inside the program
 *                    (after 10 warm-up rounds), so start-up is excluded.
 *                    With MIB, the parent first fills MIB MiB of heap (a
 *                    bigger process to fork, as a shell or an interpreter is).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int one(void)
{
	int st;
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return -1;
	}
	if (pid == 0)
		_exit(0);
	if (wait4(pid, &st, 0, NULL) != pid || st != 0) {
		fprintf(stderr, "wait4: unexpected result (status %#x)\n", st);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	long mib = argc > 2 ? atol(argv[2]) : 0;
	if (mib > 0) {
		char *p = malloc(mib << 20);
		if (!p)
			return 1;
		memset(p, 1, mib << 20);
		__asm__ volatile("" : : "r"(p) : "memory");
	}
	for (int i = 0; i < 10; i++)
		if (one())
			return 1;
	double t0 = now();
	for (long i = 0; i < n; i++)
		if (one())
			return 1;
	double dt = now() - t0;
	printf("us_per_op=%.3f\n", dt / n * 1e6);
	return 0;
}
