/*
 * pipe_throughput: bytes through a pipe between two processes.
 *
 *   pipe_throughput N   a forked child writes N MiB into a pipe in 64 KiB
 *                       write(2)s; the parent reads them with 64 KiB
 *                       read(2)s until EOF and checks the count.  Prints
 *                       mb_per_s=<float> (10^6 bytes per second), timed
 *                       inside the parent from the first byte read to EOF
 *                       (fork and start-up excluded).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long mib = argc > 1 ? atol(argv[1]) : 256;
	long total = mib * 1024 * 1024;
	static char buf[CHUNK];
	int p[2];

	if (pipe(p)) {
		perror("pipe");
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		close(p[0]);
		memset(buf, 'x', sizeof(buf));
		for (long left = total; left > 0;) {
			ssize_t w = write(p[1], buf, left < CHUNK ? left : CHUNK);
			if (w <= 0)
				_exit(1);
			left -= w;
		}
		_exit(0);
	}
	close(p[1]);
	long got = 0;
	double t0 = 0;
	ssize_t r;
	while ((r = read(p[0], buf, sizeof(buf))) > 0) {
		if (got == 0)
			t0 = now();
		got += r;
	}
	double dt = now() - t0;
	int st;
	waitpid(pid, &st, 0);
	if (got != total || st != 0) {
		fprintf(stderr, "read %ld of %ld bytes, writer status %#x\n", got, total, st);
		return 1;
	}
	printf("mb_per_s=%.1f\n", (got - (got > CHUNK ? CHUNK : 0)) / dt / 1e6);
	return 0;
}
