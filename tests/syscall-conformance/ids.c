/*
 * ids: getpid, getppid, gettid, getuid, geteuid, getgid, getegid,
 * getgroups, getresuid, getresgid, umask, uname (raw syscalls).
 *
 * Values that legitimately differ between the host and the sandbox (the pid,
 * which is 1 in the sandbox; the parent pid; the hostname; the supplementary
 * groups) are printed as TAP comments, never asserted.  What is asserted is
 * what holds everywhere: a single-threaded process's tid is its pid; real,
 * effective and saved ids agree for a program that is not setuid;
 * getgroups's size protocol; umask returns the previous mask and keeps only
 * 0777; uname names Linux on x86_64.  Errno paths: EFAULT (bad pointers),
 * EINVAL (negative or too small getgroups size).
 * The program ends with a raw exit(0 or 1) of its only thread, which ends
 * the process with that status: the harness checks it.
 */
#include "tap.h"
#include <sys/utsname.h>

int main(void)
{
	unsigned ru, eu, su, rg, eg, sg;
	gid_t groups[256];
	struct utsname u;
	long pid, n;

	tap_plan(29);

	/* pids */
	pid = syscall(SYS_getpid);
	check(pid > 0, "getpid is positive");
	tap_note("getpid = %ld", pid);
	check_eq(syscall(SYS_getpid), pid, "getpid is stable");
	check_eq(syscall(SYS_gettid), pid, "gettid of the only thread is the pid");
	n = syscall(SYS_getppid);
	check(n >= 0 && n != pid, "getppid is not negative and not our own pid");
	tap_note("getppid = %ld", n);

	/* uids and gids */
	check_eq(syscall(SYS_getuid), syscall(SYS_geteuid), "getuid == geteuid");
	check_eq(syscall(SYS_getgid), syscall(SYS_getegid), "getgid == getegid");
	tap_note("uid = %ld, gid = %ld", syscall(SYS_getuid), syscall(SYS_getgid));
	check_ok(syscall(SYS_getresuid, &ru, &eu, &su), "getresuid");
	check(ru == syscall(SYS_getuid) && eu == syscall(SYS_geteuid) && su == eu,
	      "getresuid: real, effective and saved agree with getuid/geteuid");
	check_ok(syscall(SYS_getresgid, &rg, &eg, &sg), "getresgid");
	check(rg == syscall(SYS_getgid) && eg == syscall(SYS_getegid) && sg == eg,
	      "getresgid: real, effective and saved agree with getgid/getegid");
	check_errno(syscall(SYS_getresuid, BAD_PTR, &eu, &su), EFAULT, "getresuid into a bad pointer is EFAULT");
	check_errno(syscall(SYS_getresuid, &ru, &eu, BAD_PTR), EFAULT, "getresuid with a bad third pointer is EFAULT");
	check_errno(syscall(SYS_getresgid, &rg, BAD_PTR, &sg), EFAULT, "getresgid into a bad pointer is EFAULT");

	/* getgroups */
	n = syscall(SYS_getgroups, 0, NULL);
	check(n >= 0 && n <= 256, "getgroups(0, NULL) returns the number of groups");
	tap_note("getgroups count = %ld", n);
	check_eq(syscall(SYS_getgroups, 256, groups), n, "getgroups with room returns the same count");
	check_eq(syscall(SYS_getgroups, 0, BAD_PTR), n, "getgroups of size 0 never touches the list");
	check_errno(syscall(SYS_getgroups, -1, groups), EINVAL, "getgroups of size -1 is EINVAL");
	if (n > 0) {
		check_errno(syscall(SYS_getgroups, n - 1, groups), EINVAL, "getgroups too small is EINVAL");
		check_errno(syscall(SYS_getgroups, 256, BAD_PTR), EFAULT, "getgroups into a bad pointer is EFAULT");
	} else {
		check_eq(syscall(SYS_getgroups, 1, groups), 0, "getgroups with no groups returns 0");
		check_eq(syscall(SYS_getgroups, 256, BAD_PTR), 0, "getgroups with no groups never touches the list");
	}

	/* umask */
	syscall(SYS_umask, 022);
	check_eq(syscall(SYS_umask, 077), 022, "umask returns the previous mask");
	check_eq(syscall(SYS_umask, 07777), 077, "umask returns the previous mask again");
	check_eq(syscall(SYS_umask, 022), 0777, "umask keeps only the 0777 bits");

	/* uname */
	memset(&u, 0, sizeof(u));
	check_ok(syscall(SYS_uname, &u), "uname");
	check_str(u.sysname, "Linux", "uname sysname");
	check_str(u.machine, "x86_64", "uname machine");
	check(u.release[0] >= '1' && u.release[0] <= '9' && strchr(u.release, '.'), "uname release looks like N.N...");
	check(u.version[0] != '\0', "uname version is not empty");
	check(u.nodename[0] != '\0', "uname nodename is not empty");
	tap_note("nodename = %s", u.nodename);
	check_errno(syscall(SYS_uname, BAD_PTR), EFAULT, "uname into a bad pointer is EFAULT");

	syscall(SYS_exit, tap_done());
	return 3; /* not reached: exit of the last thread does not return */
}
