/*
 * timeit: wall time of a command, measured inside the sandbox.
 *
 *   timeit N CMD [ARGS...]   runs CMD N times (fork, execve, wait4), one after
 *                            the other; prints ms_per_run=<median of the N runs>.
 *
 * Used by bench/suite.py so that a workload's time excludes the sandbox's own
 * start-up and tear-down (which the suite measures separately). CMD is looked
 * up in PATH (execvp). Exits 1 if any run fails (non-zero status).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: timeit N CMD [ARGS...]\n");
		return 2;
	}
	long n = atol(argv[1]);
	if (n <= 0 || n > 100000)
		return 2;
	double *t = calloc(n, sizeof *t);
	for (long i = 0; i < n; i++) {
		double t0 = now();
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			execvp(argv[2], argv + 2);
			perror(argv[2]);
			_exit(127);
		}
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "timeit: %s failed (status %#x)\n", argv[2], st);
			return 1;
		}
		t[i] = now() - t0;
	}
	qsort(t, n, sizeof *t, cmp);
	double med = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
	printf("ms_per_run=%.3f\n", med * 1e3);
	return 0;
}
