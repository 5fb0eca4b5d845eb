/*
 * ns_uts: unshare(2) and clone(2) with CLONE_NEWUTS: a new UTS namespace starts with its
 * creator's names, sethostname/setdomainname in it are seen by its processes (a fork child
 * shares it) and not outside; EPERM without CAP_SYS_ADMIN (unshare, sethostname); EINVAL
 * for unknown unshare flags; unshare(CLONE_FILES|CLONE_FS) of a lone process; setns EBADF
 * and EINVAL for an fd that is no namespace; /proc/sys/kernel/hostname read and written
 * in a new namespace; CLONE_NEWIPC accepted.  Each change happens in a forked child.
 */
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

static int exit_of(pid_t pid)
{
	int st = -1;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int names_are(const char *host, const char *dom)
{
	struct utsname u;
	if (uname(&u) != 0)
		return 0;
	return strcmp(u.nodename, host) == 0 && strcmp(u.domainname, dom) == 0;
}

/* In a new namespace: set the names, a fork child sees and changes them for both. */
static int unshared_child(const char *host0, const char *dom0)
{
	if (syscall(SYS_unshare, CLONE_NEWUTS) != 0) return 2;
	if (!names_are(host0, dom0)) return 3;                    /* the creator's names, copied */
	if (sethostname("ns-one", 6) != 0 || setdomainname("dom-one", 7) != 0) return 4;
	if (!names_are("ns-one", "dom-one")) return 5;
	pid_t pid = fork();
	if (pid == 0)
		_exit(names_are("ns-one", "dom-one") && sethostname("ns-two", 6) == 0 ? 0 : 1);
	if (exit_of(pid) != 0) return 6;
	if (!names_are("ns-two", "dom-one")) return 7;            /* the same namespace */
	/* /proc/sys/kernel/hostname is the reader's namespace's, and writing it sets it */
	char buf[80] = {0};
	int fd = open("/proc/sys/kernel/hostname", O_RDWR);
	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) != 7 || strcmp(buf, "ns-two\n") != 0) return 8;
	if (pwrite(fd, "ns-proc\n", 8, 0) != 8) return 9;
	close(fd);
	if (!names_are("ns-proc", "dom-one")) return 10;
	return 0;
}

static int clone_child(void)
{
	struct utsname u;
	if (sethostname("ns-clone", 8) != 0 || uname(&u) != 0) return 2;
	return strcmp(u.nodename, "ns-clone") == 0 ? 0 : 3;
}

static int nonroot(void)
{
	if (setgid(65534) != 0 || setuid(65534) != 0) return 2;
	errno = 0;
	if (syscall(SYS_unshare, CLONE_NEWUTS) != -1 || errno != EPERM) return 3;
	if (sethostname("x", 1) != -1 || errno != EPERM) return 4;
	return 0;
}

int main(void)
{
	struct utsname u0;
	char host0[65], dom0[65];
	tap_plan(12);
	check_ok(uname(&u0), "uname");
	strcpy(host0, u0.nodename);
	strcpy(dom0, u0.domainname);
	tap_note("hostname %s, domainname %s", host0, dom0);

	pid_t pid = fork();
	if (pid == 0)
		_exit(unshared_child(host0, dom0));
	check_eq(exit_of(pid), 0, "unshare(CLONE_NEWUTS): own names, copied at creation, shared with a fork child");
	check(names_are(host0, dom0), "the parent's names are unchanged");

	pid = syscall(SYS_clone, CLONE_NEWUTS | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0)
		_exit(clone_child());
	check_eq(exit_of(pid), 0, "clone(CLONE_NEWUTS) child sets its hostname");
	check(names_are(host0, dom0), "... not the parent's");

	pid = fork();
	if (pid == 0)
		_exit(nonroot());
	check_eq(exit_of(pid), 0, "non-root: unshare(CLONE_NEWUTS) and sethostname are EPERM");

	check_errno(syscall(SYS_unshare, 0x1), EINVAL, "unshare of an unknown flag is EINVAL");
	pid = fork();
	if (pid == 0)
		_exit(syscall(SYS_unshare, CLONE_NEWIPC) == 0 ? 0 : 1);
	check_eq(exit_of(pid), 0, "unshare(CLONE_NEWIPC)");
	pid = syscall(SYS_clone, CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0)
		_exit(0);
	check_eq(exit_of(pid), 0, "clone(CLONE_NEWIPC|CLONE_NEWUTS)");
	pid = fork();
	if (pid == 0)
		_exit(syscall(SYS_unshare, CLONE_FILES | CLONE_FS | CLONE_SYSVSEM) == 0 && close(0) == 0 ? 0 : 1);
	check_eq(exit_of(pid), 0, "unshare(CLONE_FILES|CLONE_FS|CLONE_SYSVSEM) of a lone process");
	check_errno(syscall(SYS_setns, -1, 0), EBADF, "setns of a closed fd is EBADF");
	int fd = open("/dev/null", O_RDONLY);
	check_errno(syscall(SYS_setns, fd, 0), EINVAL, "setns of /dev/null is EINVAL");
	return tap_done();
}
