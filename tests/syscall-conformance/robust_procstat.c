/*
 * robust_procstat: /proc/PID/stat times (proc(5)), field 22 (starttime) in particular.
 *
 * starttime is when the process started, in clock ticks since boot: a child forked 150 ms after
 * its parent started has a larger one, and neither is past /proc/uptime (it was always 0 in the
 * sandbox, issue 11).  utime (field 14) grows with CPU time spent; field 19 (nice) follows
 * setpriority and field 18 (priority) is 20 + nice.
 */
#include "tap.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

/* Field `n` (1-based) of /proc/PID/stat, counted after the ")" that ends the comm. */
static long long stat_field(pid_t pid, int n)
{
	char path[64], buf[1024], *p;
	int fd, len;
	long long v = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return -1;
	buf[len] = 0;
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	p += 2;                                  /* field 3 starts here */
	for (int i = 3; i < n && p; i++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (p)
		sscanf(p, "%lld", &v);
	return v;
}

static double uptime(void)
{
	char buf[64] = {0};
	int fd = open("/proc/uptime", O_RDONLY);
	double up = -1;

	if (fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0)
		sscanf(buf, "%lf", &up);
	if (fd >= 0)
		close(fd);
	return up;
}

int main(void)
{
	long long mine, child_start, ut0, ut1;
	struct timespec ts = {0, 150000000};
	int p[2], st;
	pid_t pid;
	char c;
	volatile unsigned long spin = 0;

	tap_plan(6);
	mine = stat_field(getpid(), 22);
	nanosleep(&ts, NULL);
	if (pipe(p) != 0)
		return 1;
	pid = fork();
	if (pid == 0) {
		close(p[1]);
		read(p[0], &c, 1);
		_exit(0);
	}
	close(p[0]);
	child_start = stat_field(pid, 22);
	check(mine >= 0 && child_start > mine,
	      "a child forked 150 ms later has a later starttime (%lld > %lld)", child_start, mine);
	check(child_start <= (long long)(uptime() * 100) + 1, "starttime is not past /proc/uptime (%lld ticks)", child_start);
	write(p[1], "x", 1);
	waitpid(pid, &st, 0);

	ut0 = stat_field(getpid(), 14);
	for (unsigned long i = 0; i < 300000000UL; i++)
		spin += i;
	ut1 = stat_field(getpid(), 14);
	check(ut0 >= 0 && ut1 > ut0, "utime grows with CPU time (%lld -> %lld ticks)", ut0, ut1);
	check(ut1 < 100000, "utime is in clock ticks (%lld)", ut1);
	setpriority(PRIO_PROCESS, 0, 5);
	check_eq(stat_field(getpid(), 19), 5, "field 19 is the nice value");
	check_eq(stat_field(getpid(), 18), 25, "field 18, priority, is 20 + nice");
	return tap_done();
}
