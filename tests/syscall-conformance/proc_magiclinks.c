/*
 * proc_magiclinks: /proc/PID/root and /proc/PID/cwd are magic links.
 *
 * Following one jumps to the task's own root or working directory, whatever
 * the reader's root is; reading it gives that directory's path as the reader
 * names it (d_path).  A child chroots into /tmp/proc_magiclinks.d/jail and
 * changes into /a there; the parent (not chrooted) then reads, stats,
 * readlinks and opens through /proc/CHILD/{root,cwd}, and openat2 with
 * RESOLVE_BENEATH refuses the jump (EXDEV) while RESOLVE_NO_MAGICLINKS gives
 * ELOOP.  Everything is made under /tmp/proc_magiclinks.d and removed again.
 */
#include "tap.h"
#include "files.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/openat2.h>

#define D "/tmp/proc_magiclinks.d"

static int readlink_is(const char *link, const char *want)
{
	char buf[256];
	ssize_t n = readlink(link, buf, sizeof(buf) - 1);
	if (n < 0)
		return 0;
	buf[n] = 0;
	if (strcmp(buf, want))
		tap_printf("# readlink %s = %s\n", link, buf);
	return strcmp(buf, want) == 0;
}

int main(void)
{
	int ready[2], done[2];
	char path[128], link[128];
	pid_t child;
	struct stat st;
	struct open_how how;
	struct stat tmp_st;
	struct timespec ts[2];
	long ret;
	int err;
	char c;

	tap_plan(13);
	stat("/tmp", &tmp_st);
	mkdir(D, 0755);
	mkdir(D "/jail", 0755);
	mkdir(D "/jail/a", 0755);
	put(D "/jail/marker", "J");
	put(D "/jail/a/f", "A");
	put(D "/marker", "O");
	if (pipe(ready) || pipe(done))
		return 1;
	child = fork();
	if (child == 0) {
		close(ready[0]);
		close(done[1]);
		if (chroot(D "/jail") || chdir("/a"))
			_exit(2);
		if (write(ready[1], "r", 1) != 1)
			_exit(3);
		if (read(done[0], &c, 1) < 0)
			_exit(4);
		_exit(0);
	}
	close(ready[1]);
	close(done[0]);
	tap_eq(read(ready[0], &c, 1), 1, errno, "the child chrooted and changed directory");

	snprintf(link, sizeof(link), "/proc/%d/root", child);
	tap_check(readlink_is(link, D "/jail"), "see the log", "readlink /proc/CHILD/root is the jail's path");
	snprintf(path, sizeof(path), "/proc/%d/root/marker", child);
	tap_eq(first_byte(path), 'J', errno, "/proc/CHILD/root/marker is the jail's marker");
	snprintf(path, sizeof(path), "/proc/%d/root/a/f", child);
	tap_eq(first_byte(path), 'A', errno, "/proc/CHILD/root/a/f reads the jail's file");
	snprintf(link, sizeof(link), "/proc/%d/cwd", child);
	tap_check(readlink_is(link, D "/jail/a"), "see the log", "readlink /proc/CHILD/cwd is the path from our root");
	snprintf(path, sizeof(path), "/proc/%d/cwd/f", child);
	tap_eq(first_byte(path), 'A', errno, "/proc/CHILD/cwd/f reads the file in its working directory");
	snprintf(path, sizeof(path), "/proc/%d/cwd", child);
	tap_eq(stat(path, &st) == 0 && S_ISDIR(st.st_mode), 1, errno, "stat /proc/CHILD/cwd is its directory");
	snprintf(path, sizeof(path), "/proc/%d/root/..", child);
	tap_eq(stat(path, &st) == 0 && S_ISDIR(st.st_mode), 1, errno, "/proc/CHILD/root/.. is a directory");
	tap_check(readlink_is("/proc/self/root", "/"), "see the log", "readlink /proc/self/root is /");

	memset(&how, 0, sizeof(how));
	how.flags = O_RDONLY;
	how.resolve = RESOLVE_NO_MAGICLINKS;
	snprintf(path, sizeof(path), "/proc/%d/root/marker", child);
	ret = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
	err = errno;
	tap_errno(ret, err, ELOOP, "openat2 RESOLVE_NO_MAGICLINKS through /proc/CHILD/root is ELOOP");
	how.resolve = RESOLVE_BENEATH;
	{
		int proc = open("/proc", O_RDONLY | O_DIRECTORY);
		snprintf(path, sizeof(path), "%d/root/marker", child);
		ret = syscall(SYS_openat2, proc, path, &how, sizeof(how));
		err = errno;
		tap_errno(ret, err, EXDEV, "openat2 RESOLVE_BENEATH refuses the jump (EXDEV)");
		how.resolve = RESOLVE_IN_ROOT;
		ret = syscall(SYS_openat2, proc, "self/fd/0", &how, sizeof(how));
		err = errno;
		tap_errno(ret, err, EXDEV, "openat2 RESOLVE_IN_ROOT refuses a /proc/self/fd link (EXDEV)");
		close(proc);
	}
	if (write(done[1], "d", 1) != 1)
		tap_printf("# write done failed\n");
	{
		int status = -1;
		waitpid(child, &status, 0);
		tap_eq(status, 0, errno, "the child exited 0");
	}
	unlink(D "/jail/a/f");
	unlink(D "/jail/marker");
	unlink(D "/marker");
	rmdir(D "/jail/a");
	rmdir(D "/jail");
	rmdir(D);
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);
	return tap_done();
}
