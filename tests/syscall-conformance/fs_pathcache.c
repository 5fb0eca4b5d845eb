/*
 * fs_pathcache: a path looked up again and again must see every change at once.
 *
 * The Sentry remembers whole path walks (sentry/vfs/walk.py's path cache).
 * Each block here first looks a path up several times (so the walk is
 * cached), then changes the tree -- rename (of a file, over a file, of a
 * directory), unlink, a symlink swapped for another, a file replaced by a
 * directory, chmod of a directory a non-root caller searches, a directory's
 * set-group-ID bit and group changed after files were made in it, chroot -- and
 * checks that the very next stat/open answers as Linux does.  Also the errno
 * paths repeated on a warm cache (ENOENT, ENOTDIR, ELOOP, EACCES, EBADF),
 * O_NOFOLLOW/lstat after a following stat of the same symlink, and relative
 * paths from two working directories and from a dirfd; and first of all
 * O_CREAT|O_EXCL of existing names no lookup has seen (EEXIST, before EACCES).
 *
 * Everything is made under /tmp/fs_pathcache.d and removed again; /tmp's own
 * times are put back at the end.
 */
#include "tap.h"
#include "files.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define D "/tmp/fs_pathcache.d"

static ino_t ino_of(const char *p)
{
	struct stat s;
	return stat(p, &s) == 0 ? s.st_ino : 0;
}

/* stat `p` three times (warming any cache); the errno of the last, 0 on success */
static int stat3(const char *p)
{
	struct stat s;
	int r = 0, i;
	for (i = 0; i < 3; i++)
		r = stat(p, &s) ? errno : 0;
	return r;
}

/* In a child that becomes uid/gid 1000 in /tmp: the errno of stat(p) (0 on success); three stats
 * in a row must agree.  The exit status carries it. */
static int as_user(const char *p)
{
	pid_t pid = fork();
	int status;
	if (pid == 0) {
		int a, b;
		if (chdir("/tmp"))             /* the rootfs's own root may be 0700: walk from /tmp */
			_exit(253);
		if (setresgid(1000, 1000, 1000) || setresuid(1000, 1000, 1000))
			_exit(255);
		a = stat3(p);
		b = stat3(p);
		_exit(a == b ? a : 254);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

int main(void)
{
	struct stat tmp_st, s, s2;
	struct timespec ts[2];
	ino_t i1, i2;
	int dfd, fd, i;

	tap_plan(72);
	stat("/tmp", &tmp_st);
	umask(022);

	/* O_CREAT|O_EXCL of existing names no lookup has seen yet (first thing: nothing cached) */
	check_errno(open("/fixtures/dir/alpha", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST,
		    "O_CREAT|O_EXCL of an existing, never looked up file: EEXIST");
	check_errno(open("/fixtures/dangling", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST,
		    "O_CREAT|O_EXCL of a dangling symlink: EEXIST");
	check_errno(open("/fixtures/link-rel", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST,
		    "O_CREAT|O_EXCL of a symlink to a file: EEXIST");
	check_errno(open("/fixtures/emptydir", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST,
		    "O_CREAT|O_EXCL of a directory: EEXIST");
	if (fork() == 0) {
		/* uid 1000 in a root 0755 directory: an existing name is EEXIST before EACCES */
		int a, b;
		if (chdir("/fixtures/dir") || setresgid(1000, 1000, 1000) || setresuid(1000, 1000, 1000))
			_exit(9);
		a = open("beta", O_CREAT | O_EXCL | O_WRONLY, 0644) < 0 ? errno : 0;
		b = open("nope", O_CREAT | O_EXCL | O_WRONLY, 0644) < 0 ? errno : 0;
		_exit(a == EEXIST && b == EACCES ? 0 : a == EEXIST ? 2 : 1);
	}
	wait(&i);
	check_eq(WIFEXITED(i) ? WEXITSTATUS(i) : -1, 0,
		 "uid 1000, unwritable directory: O_CREAT|O_EXCL of an existing name EEXIST, of a new one EACCES");
	check_ok(mkdir(D, 0755), "mkdir the test directory");

	/* rename of a file */
	put(D "/a", "a");
	check_eq(stat3(D "/a"), 0, "stat a (warm)");
	check_ok(rename(D "/a", D "/b"), "rename a -> b");
	check_errno(stat(D "/a", &s), ENOENT, "stat a after the rename: ENOENT");
	check_errno(open(D "/a", O_RDONLY), ENOENT, "open a after the rename: ENOENT");
	check_eq(first_byte(D "/b"), 'a', "b has a's content");

	/* unlink */
	check_eq(stat3(D "/b"), 0, "stat b (warm)");
	check_ok(unlink(D "/b"), "unlink b");
	check_errno(stat(D "/b", &s), ENOENT, "stat b after unlink: ENOENT");
	check_errno(open(D "/b", O_RDONLY), ENOENT, "open b after unlink: ENOENT");
	check_errno(stat(D "/b", &s), ENOENT, "stat b again: ENOENT");

	/* a new name appears */
	check_eq(stat3(D "/new"), ENOENT, "stat a missing name (warm): ENOENT");
	put(D "/new", "n");
	check_eq(stat3(D "/new"), 0, "stat it once created");
	check_ok(unlink(D "/new"), "unlink it");

	/* rename over an existing file */
	put(D "/t1", "1");
	put(D "/t2", "2");
	i1 = ino_of(D "/t1");
	check_eq(stat3(D "/t2"), 0, "stat t2 (warm)");
	check_ok(rename(D "/t1", D "/t2"), "rename t1 over t2");
	check_eq(ino_of(D "/t2") == i1, 1, "t2 is now t1's inode");
	check_eq(first_byte(D "/t2"), '1', "t2 has t1's content");
	check_ok(unlink(D "/t2"), "unlink t2");

	/* a symlink swapped for another (rename over it, then unlink + symlink) */
	mkdir(D "/x", 0755);
	mkdir(D "/y", 0755);
	put(D "/x/f", "x");
	put(D "/y/f", "y");
	check_ok(symlink("x", D "/l"), "symlink l -> x");
	for (i = 0; i < 3; i++)
		first_byte(D "/l/f");
	check_eq(first_byte(D "/l/f"), 'x', "l/f reads x (warm)");
	check_ok(symlink("y", D "/l2"), "symlink l2 -> y");
	check_ok(rename(D "/l2", D "/l"), "rename l2 over l");
	check_eq(first_byte(D "/l/f"), 'y', "l/f now reads y");
	check_eq(stat3(D "/l/f"), 0, "stat l/f (warm)");
	check_ok(unlink(D "/l"), "unlink l");
	check_ok(symlink("x", D "/l"), "symlink l -> x again");
	check_eq(first_byte(D "/l/f"), 'x', "l/f reads x again");

	/* O_NOFOLLOW and lstat after a following lookup of the same symlink */
	check_eq(stat3(D "/x/f"), 0, "stat x/f (warm)");
	check_ok(symlink("f", D "/x/lf"), "symlink x/lf -> f");
	check_eq(stat3(D "/x/lf"), 0, "stat through x/lf (warm)");
	check_errno(open(D "/x/lf", O_RDONLY | O_NOFOLLOW), ELOOP, "O_NOFOLLOW on x/lf: ELOOP");
	check(lstat(D "/x/lf", &s) == 0 && S_ISLNK(s.st_mode), "lstat x/lf is the link");
	check(stat(D "/x/lf", &s) == 0 && S_ISREG(s.st_mode), "stat x/lf is the file");

	/* the errno paths, again and again */
	check_ok(symlink("loop", D "/loop"), "symlink loop -> loop");
	check_eq(stat3(D "/loop"), ELOOP, "stat loop three times: ELOOP");
	check_eq(stat3(D "/x/f/"), ENOTDIR, "stat x/f/ three times: ENOTDIR");
	check_eq(stat3(D "/x/f/g"), ENOTDIR, "stat x/f/g three times: ENOTDIR");
	check_eq(stat3(D "/x/nope/g"), ENOENT, "stat x/nope/g three times: ENOENT");

	/* a file replaced by a directory, and back */
	check_eq(stat3(D "/x/f"), 0, "stat x/f (warm)");
	check_ok(unlink(D "/x/f"), "unlink x/f");
	check_ok(mkdir(D "/x/f", 0755), "mkdir x/f");
	check_eq(stat3(D "/x/f/"), 0, "stat x/f/ is a directory now");
	check(stat(D "/x/f", &s) == 0 && S_ISDIR(s.st_mode), "stat x/f says directory");
	check_ok(rmdir(D "/x/f"), "rmdir x/f");
	put(D "/x/f", "x");

	/* rename of a directory: the old path is gone, '..' follows the move */
	check_eq(stat3(D "/y/f"), 0, "stat y/f (warm)");
	stat(D "/y/..", &s);
	check_ok(rename(D "/y", D "/x/y"), "rename y -> x/y");
	check_errno(stat(D "/y/f", &s2), ENOENT, "stat y/f after the move: ENOENT");
	check_eq(first_byte(D "/x/y/f"), 'y', "x/y/f reads y");
	check_eq(ino_of(D "/x/y/..") == ino_of(D "/x"), 1, "x/y/.. is x now");

	/* relative paths: two working directories, and a dirfd that is closed */
	chdir(D "/x");
	check_eq(first_byte("f"), 'x', "relative f from x");
	chdir(D "/x/y");
	check_eq(first_byte("f"), 'y', "relative f from x/y");
	chdir("/");
	dfd = open(D "/x", O_RDONLY | O_DIRECTORY);
	for (i = 0; i < 3; i++)
		fstatat(dfd, "f", &s, 0);
	close(dfd);
	check_errno(fstatat(dfd, "f", &s, 0), EBADF, "fstatat on a closed dirfd: EBADF");
	fd = open(D "/x/f", O_RDONLY);
	check_errno(fstatat(fd, "f", &s, 0), ENOTDIR, "fstatat on a file fd: ENOTDIR");
	close(fd);

	/* chmod of a directory a non-root caller searches */
	mkdir(D "/p", 0755);
	put(D "/p/f", "p");
	check_eq(as_user("fs_pathcache.d/p/f"), 0, "uid 1000: stat p/f");
	check_ok(chmod(D "/p", 0700), "chmod p 0700");
	check_eq(as_user("fs_pathcache.d/p/f"), EACCES, "uid 1000: stat p/f is EACCES now");
	check_ok(chmod(D "/p", 0711), "chmod p 0711");
	check_eq(as_user("fs_pathcache.d/p/f"), 0, "uid 1000: stat p/f works again");

	/* a directory's set-group-ID bit and group, changed after files were made in it */
	mkdir(D "/g", 0755);
	put(D "/g/a", "a");
	check_ok(chown(D "/g", 0, 1000), "chown g to group 1000");
	check_ok(chmod(D "/g", 02755), "chmod g 02755");
	put(D "/g/b", "b");
	check(stat(D "/g/b", &s) == 0 && s.st_gid == 1000, "a file made in g now has g's group");
	mkdir(D "/g/sub", 0755);
	check(stat(D "/g/sub", &s) == 0 && s.st_gid == 1000 && (s.st_mode & S_ISGID), "a directory made in g inherits group and S_ISGID");
	check_ok(chmod(D "/g", 0755), "chmod g 0755");
	put(D "/g/c", "c");
	check(stat(D "/g/c", &s) == 0 && s.st_gid == 0, "without S_ISGID a new file has the creator's group");

	/* chroot: the same absolute path under another root */
	if (fork() == 0) {
		int ok = chroot(D "/x") == 0 && chdir("/") == 0 && first_byte("/f") == 'x' &&
			 first_byte("/y/f") == 'y' && first_byte("/../f") == 'x';
		_exit(ok ? 0 : 1);
	}
	wait(&i);
	check_eq(WIFEXITED(i) ? WEXITSTATUS(i) : -1, 0, "chroot: /f is x/f, /.. stays at the root");

	/* clean up */
	unlink(D "/g/a");
	unlink(D "/g/b");
	unlink(D "/g/c");
	rmdir(D "/g/sub");
	rmdir(D "/g");
	unlink(D "/p/f");
	rmdir(D "/p");
	unlink(D "/x/y/f");
	rmdir(D "/x/y");
	unlink(D "/x/lf");
	unlink(D "/x/f");
	rmdir(D "/x");
	unlink(D "/l");
	unlink(D "/loop");
	check_ok(rmdir(D), "rmdir the test directory");
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);
	(void)i2;
	return tap_done();
}
