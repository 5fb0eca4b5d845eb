/*
 * fileops: filesystem syscall costs, measured inside the program.
 *
 *   fileops stat N DIR       stat(DIR/f) N times                    -> ns_per_op
 *   fileops open N DIR       open+close DIR/f N times               -> ns_per_op
 *   fileops create N DIR     create, write 4 KiB, close, unlink     -> ns_per_op
 *   fileops write N DIR      write 64 MiB sequentially (1 MiB writes, N ignored) -> mb_per_s
 *   fileops read N DIR       read that file back                    -> mb_per_s
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: fileops stat|open|create|write|read N DIR\n");
		return 2;
	}
	const char *mode = argv[1];
	long n = atol(argv[2]);
	char path[4096], big[4096];
	snprintf(path, sizeof path, "%s/f", argv[3]);
	snprintf(big, sizeof big, "%s/big", argv[3]);
	static char buf[1 << 20];
	memset(buf, 'x', sizeof buf);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, 4096) != 4096) { perror("setup"); return 1; }
	close(fd);
	double t0 = now(), t1;
	if (!strcmp(mode, "stat")) {
		struct stat st;
		for (long i = 0; i < n; i++)
			if (stat(path, &st)) { perror("stat"); return 1; }
	} else if (!strcmp(mode, "open")) {
		for (long i = 0; i < n; i++) {
			int f = open(path, O_RDONLY);
			if (f < 0) { perror("open"); return 1; }
			close(f);
		}
	} else if (!strcmp(mode, "create")) {
		char p[4096];
		for (long i = 0; i < n; i++) {
			snprintf(p, sizeof p, "%s/c%ld", argv[3], i);
			int f = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
			if (f < 0 || write(f, buf, 4096) != 4096) { perror("create"); return 1; }
			close(f);
			if (unlink(p)) { perror("unlink"); return 1; }
		}
	} else if (!strcmp(mode, "write") || !strcmp(mode, "read")) {
		int w = !strcmp(mode, "write");
		if (!w) {                         /* make the file first, then time the read */
			int f = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			for (int i = 0; i < 64; i++) if (write(f, buf, sizeof buf) != sizeof buf) return 1;
			close(f);
			t0 = now();
		}
		int f = open(big, w ? (O_WRONLY | O_CREAT | O_TRUNC) : O_RDONLY, 0644);
		for (int i = 0; i < 64; i++) {
			ssize_t r = w ? write(f, buf, sizeof buf) : read(f, buf, sizeof buf);
			if (r != sizeof buf) { perror(mode); return 1; }
		}
		if (w) fsync(f);
		close(f);
		t1 = now();
		unlink(big);
		printf("mb_per_s=%.1f\n", 64.0 / (t1 - t0));
		return 0;
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	t1 = now();
	printf("ns_per_op=%.1f\n", (t1 - t0) * 1e9 / n);
	return 0;
}
