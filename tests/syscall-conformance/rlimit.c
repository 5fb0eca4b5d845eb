/*
 * rlimit: getrlimit, setrlimit, prlimit64 (raw syscalls: glibc implements
 * getrlimit/setrlimit with prlimit64, so each is called by its own number).
 *
 * Success paths: every resource reads with cur <= max; the three calls agree
 * with each other; prlimit64 sets and returns the old value in one call and
 * accepts our own pid; a lowered RLIMIT_NOFILE soft limit is enforced by
 * F_DUPFD, dup2 and open (EMFILE once fds below the limit are used up);
 * limits are restored afterwards.  The host's and the sandbox's limit values
 * differ, so only relations are asserted.  Errno paths: EINVAL (unknown
 * resource, cur > max), EPERM (RLIMIT_NOFILE above nr_open), EFAULT (bad
 * pointers), ESRCH (no such pid).
 */
#include "tap.h"
#include <fcntl.h>
#include <sys/resource.h>

struct krlimit { unsigned long cur, max; };

static long sys_getrlimit(int res, struct krlimit *r) { return syscall(SYS_getrlimit, res, r); }
static long sys_setrlimit(int res, const struct krlimit *r) { return syscall(SYS_setrlimit, res, r); }
static long sys_prlimit64(int pid, int res, const struct krlimit *n, struct krlimit *o)
{
	return syscall(SYS_prlimit64, pid, res, n, o);
}

#define LOW_NOFILE 64

int main(void)
{
	struct krlimit orig, r, r2;
	int res, fd, last, fds[LOW_NOFILE];
	int n = 0, all_ok = 1, err = 0;

	tap_plan(40);

	/* reading */
	for (res = 0; res < RLIM_NLIMITS; res++) {
		if (sys_getrlimit(res, &r) != 0 || r.cur > r.max)
			all_ok = 0;
	}
	check(all_ok, "getrlimit of every resource succeeds with cur <= max");
	check_ok(sys_getrlimit(RLIMIT_NOFILE, &orig), "getrlimit RLIMIT_NOFILE");
	check(orig.cur >= LOW_NOFILE * 2, "RLIMIT_NOFILE leaves room for this test");
	check_ok(sys_prlimit64(0, RLIMIT_NOFILE, NULL, &r), "prlimit64 read RLIMIT_NOFILE");
	check(r.cur == orig.cur && r.max == orig.max, "prlimit64 agrees with getrlimit");
	check_ok(sys_prlimit64(syscall(SYS_getpid), RLIMIT_NOFILE, NULL, &r), "prlimit64 of our own pid");
	check(r.cur == orig.cur && r.max == orig.max, "prlimit64 of our own pid agrees");
	check_eq(sys_prlimit64(0, RLIMIT_NOFILE, NULL, NULL), 0, "prlimit64 with neither new nor old does nothing");

	/* lowering RLIMIT_NOFILE is enforced */
	r = (struct krlimit){ LOW_NOFILE, orig.max };
	check_ok(sys_setrlimit(RLIMIT_NOFILE, &r), "setrlimit RLIMIT_NOFILE soft limit to 64");
	check_ok(sys_getrlimit(RLIMIT_NOFILE, &r2), "getrlimit after setrlimit");
	check(r2.cur == LOW_NOFILE && r2.max == orig.max, "getrlimit shows the new soft limit, hard unchanged");
	fd = check_ok(open("/fixtures/file.txt", O_RDONLY), "open a file");
	check_errno(fcntl(fd, F_DUPFD, LOW_NOFILE), EINVAL, "F_DUPFD at the soft limit is EINVAL");
	check_eq(fcntl(fd, F_DUPFD, LOW_NOFILE - 1), LOW_NOFILE - 1, "F_DUPFD just below the soft limit");
	close(LOW_NOFILE - 1);
	check_errno(dup2(fd, LOW_NOFILE), EBADF, "dup2 at the soft limit is EBADF");
	last = -1;
	while (n < LOW_NOFILE) {
		errno = 0;
		fds[n] = open("/fixtures/empty", O_RDONLY);
		if (fds[n] < 0) {
			err = errno;
			break;
		}
		last = fds[n++];
	}
	check_eq(last, LOW_NOFILE - 1, "open hands out fds up to the soft limit - 1");
	tap_errno(-1, err, EMFILE, "then open is EMFILE");
	while (n > 0)
		close(fds[--n]);

	/* prlimit64 set and get in one call */
	r = (struct krlimit){ 2 * LOW_NOFILE, orig.max };
	check_ok(sys_prlimit64(0, RLIMIT_NOFILE, &r, &r2), "prlimit64 set and get at once");
	check_eq(r2.cur, LOW_NOFILE, "prlimit64 returns the old soft limit");
	check_eq(fcntl(fd, F_DUPFD, LOW_NOFILE), LOW_NOFILE, "the raised soft limit allows fd 64");
	close(LOW_NOFILE);
	check_ok(sys_setrlimit(RLIMIT_NOFILE, &orig), "restore RLIMIT_NOFILE");
	check_ok(sys_getrlimit(RLIMIT_NOFILE, &r2), "getrlimit after restoring");
	check(r2.cur == orig.cur && r2.max == orig.max, "RLIMIT_NOFILE is back to the original");
	close(fd);

	/* RLIMIT_CORE round trip */
	check_ok(sys_getrlimit(RLIMIT_CORE, &r), "getrlimit RLIMIT_CORE");
	r2 = (struct krlimit){ 0, r.max };
	check_ok(sys_setrlimit(RLIMIT_CORE, &r2), "setrlimit RLIMIT_CORE soft 0");
	check_ok(sys_prlimit64(0, RLIMIT_CORE, &r, &r2), "prlimit64 restores RLIMIT_CORE");
	check(r2.cur == 0 && r2.max == r.max, "prlimit64 returned the soft 0 just set");

	/* errors */
	r = (struct krlimit){ 10, 5 };
	check_errno(sys_setrlimit(RLIMIT_NOFILE, &r), EINVAL, "setrlimit with cur > max is EINVAL");
	check_errno(sys_prlimit64(0, RLIMIT_NOFILE, &r, NULL), EINVAL, "prlimit64 with cur > max is EINVAL");
	r = (struct krlimit){ RLIM_INFINITY, RLIM_INFINITY };
	check_errno(sys_setrlimit(RLIMIT_NOFILE, &r), EPERM, "RLIMIT_NOFILE above nr_open is EPERM");
	check_errno(sys_getrlimit(100, &r), EINVAL, "getrlimit of resource 100 is EINVAL");
	check_errno(sys_setrlimit(100, &orig), EINVAL, "setrlimit of resource 100 is EINVAL");
	check_errno(sys_prlimit64(0, 100, NULL, &r), EINVAL, "prlimit64 of resource 100 is EINVAL");
	check_errno(sys_getrlimit(RLIMIT_NOFILE, BAD_PTR), EFAULT, "getrlimit into a bad pointer is EFAULT");
	check_errno(sys_setrlimit(RLIMIT_NOFILE, BAD_PTR), EFAULT, "setrlimit from a bad pointer is EFAULT");
	check_errno(sys_prlimit64(0, RLIMIT_NOFILE, BAD_PTR, NULL), EFAULT, "prlimit64 from a bad pointer is EFAULT");
	check_errno(sys_prlimit64(0, RLIMIT_NOFILE, NULL, BAD_PTR), EFAULT, "prlimit64 into a bad pointer is EFAULT");
	check_errno(sys_prlimit64(0x7fffffff, RLIMIT_NOFILE, NULL, &r), ESRCH, "prlimit64 of a missing pid is ESRCH");
	check_ok(sys_getrlimit(RLIMIT_NOFILE, &r2), "getrlimit after the failures");
	check(r2.cur == orig.cur && r2.max == orig.max, "failed calls changed nothing");

	return tap_done();
}
