/*
 * userns_rules: CLONE_NEWUSER and its uid/gid maps, as kernel/user_namespace.c has them.
 * Not a conformance program: Linux refuses CLONE_NEWUSER to a chrooted process (EPERM),
 * so tests/test_namespaces.py runs this natively without chroot and in the sandbox.
 * Prints TAP.
 */
#define _GNU_SOURCE
#include "../syscall-conformance/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

static int put(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, s, strlen(s));
	int e = errno;
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -e;
}

static int in_child(int (*fn)(void))
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(fn());
	int st = -1;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A non-root process maps only its own ids, gid_map only after setgroups "deny". */
static int unprivileged(void)
{
	if (setgid(65534) != 0 || setuid(65534) != 0) return 2;
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);     /* setuid cleared it: /proc/self would be root's */
	if (syscall(SYS_unshare, CLONE_NEWUSER) != 0) return 3;
	if (getuid() != 65534 || geteuid() != 65534) return 4;           /* unmapped: overflow id */
	if (put("/proc/self/uid_map", "0 1000 1") != -EPERM) return 5;     /* not its own euid */
	if (put("/proc/self/uid_map", "0 65534 1") != 0) return 6;
	if (getuid() != 0 || geteuid() != 0) return 7;
	if (put("/proc/self/uid_map", "0 65534 1") != -EPERM) return 8;   /* only once */
	if (put("/proc/self/gid_map", "0 65534 1") != -EPERM) return 9;   /* setgroups still allowed */
	if (put("/proc/self/setgroups", "deny") != 0) return 10;
	if (put("/proc/self/gid_map", "0 65534 1") != 0) return 11;
	if (getgid() != 0 || getegid() != 0) return 12;
	errno = 0;
	if (setuid(5) != -1 || errno != EINVAL) return 13;                 /* unmapped id */
	if (setgroups(0, NULL) != -1 || errno != EPERM) return 14;         /* setgroups denied */
	if (put("/proc/self/setgroups", "allow") != -EPERM) return 15;
	return 0;
}

/* Root of the parent namespace maps ranges into a child's; the child sees them. */
static int privileged(void)
{
	int go[2], ready[2];
	char c;
	if (pipe(go) != 0 || pipe(ready) != 0) return 2;
	pid_t pid = fork();
	if (pid == 0) {
		if (syscall(SYS_unshare, CLONE_NEWUSER) != 0) _exit(2);
		if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1) _exit(3);
		if (getuid() != 0) _exit(4);
		if (setuid(22) != 0 || getuid() != 22 || geteuid() != 22) _exit(5);
		char buf[200] = {0};
		int fd = open("/proc/self/uid_map", O_RDONLY);
		if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0) _exit(6);
		_exit(strcmp(buf, "         0          0         10\n        20        100          5\n") == 0 ? 0 : 7);
	}
	char path[64], gpath[64];
	snprintf(path, sizeof(path), "/proc/%d/uid_map", pid);
	snprintf(gpath, sizeof(gpath), "/proc/%d/gid_map", pid);
	int bad = 0;
	if (read(ready[0], &c, 1) != 1) bad |= 1;
	if (put(path, "bad") != -EINVAL) bad |= 2;
	if (put(path, "0 0 0") != -EINVAL) bad |= 4;
	if (put(path, "0 0 10\n5 100 10\n") != -EINVAL) bad |= 8;            /* overlap */
	if (put(path, "0 0 10\n20 100 5\n") != 0) bad |= 16;
	if (put(gpath, "0 0 1") != 0) bad |= 32;
	if (write(go[1], "g", 1) != 1) bad |= 64;
	int st = -1;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		tap_note("privileged: child status %#x", st);
		bad |= 128;
	}
	if (bad)
		tap_note("privileged: failed bits %#x", bad);
	return bad ? 1 : 0;
}

/* Root inside a new namespace may map only itself (unshare -r as root). */
static int root_inside(void)
{
	if (syscall(SYS_unshare, CLONE_NEWUSER) != 0) return 2;
	if (put("/proc/self/uid_map", "0 1000 1") != -EPERM) return 3;
	if (put("/proc/self/uid_map", "0 0 1") != 0) return 4;
	if (put("/proc/self/setgroups", "deny") != 0) return 5;
	if (put("/proc/self/gid_map", "0 0 1") != 0) return 6;
	return getuid() == 0 && getgid() == 0 ? 0 : 7;
}

static int clone_flags(void)
{
	errno = 0;
	if (syscall(SYS_clone, CLONE_NEWUSER | CLONE_FS | SIGCHLD, 0, 0, 0, 0) != -1 || errno != EINVAL) return 2;
	pid_t pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0)
		_exit(getuid() == 65534 ? 0 : 1);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 3;
}

static char *self_path;

/* The creator of a user namespace holds its capabilities (a UTS namespace made with or after
 * it is its own to rename) until it execs a program as a non-root id of it. */
static int unprivileged_uts(void)
{
	struct utsname u;
	if (setgid(65534) != 0 || setuid(65534) != 0) return 2;
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	if (sethostname("no", 2) != -1 || errno != EPERM) return 3;
	if (syscall(SYS_unshare, CLONE_NEWUSER) != 0) return 4;
	if (sethostname("no", 2) != -1 || errno != EPERM) return 5;       /* the sandbox's UTS namespace */
	if (syscall(SYS_unshare, CLONE_NEWUTS) != 0) return 6;
	if (sethostname("userns-uts", 10) != 0) return 7;
	if (uname(&u) != 0 || strcmp(u.nodename, "userns-uts") != 0) return 8;
	char *args[] = {self_path, "exec-child", NULL};
	execv(self_path, args);
	return 9;
}

static int exec_child(void)
{
	/* uid 65534 is not mapped: no capabilities after execve */
	return sethostname("again", 5) == -1 && errno == EPERM ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "exec-child") == 0)
		return exec_child();
	self_path = argv[0];
	tap_plan(6);
	int fd = open("/proc/self/uid_map", O_RDONLY);
	char buf[100] = {0};
	check(fd >= 0 && read(fd, buf, sizeof(buf) - 1) > 0
	      && strcmp(buf, "         0          0 4294967295\n") == 0, "the initial namespace's uid_map");
	check_eq(in_child(unprivileged), 0, "unprivileged: own id only, once, setgroups deny before gid_map, EINVAL for unmapped ids");
	check_eq(in_child(privileged), 0, "root of the parent: map format checks, ranges; the child's setuid through the map, uid_map as read");
	check_eq(in_child(root_inside), 0, "root inside a new namespace maps only itself");
	check_eq(in_child(unprivileged_uts), 0, "unprivileged: sethostname in a UTS namespace of its own user namespace; not after execve");
	check_eq(in_child(clone_flags), 0, "clone(CLONE_NEWUSER|CLONE_FS) EINVAL; clone(CLONE_NEWUSER) child unmapped");
	return tap_done();
}
