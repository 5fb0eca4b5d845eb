/*
 * fs_edges: the errnos of tree changes at the edges: "/", ".", "..", trailing
 * slashes, a directory into itself, renames of a name onto itself.  Changes
 * only under /tmp (removed again; /tmp's times are put back).
 */
#include "tap.h"
#include <fcntl.h>
#include <sys/stat.h>

int main(void)
{
	struct stat tmp_st;
	struct timespec ts[2];
	int fd;

	tap_plan(26);
	stat("/tmp", &tmp_st);
	check_errno(rmdir("/"), EBUSY, "rmdir /: EBUSY");
	check_errno(rmdir("//"), EBUSY, "rmdir //: EBUSY");
	check_errno(mkdir("/", 0755), EEXIST, "mkdir /: EEXIST");
	check_errno(unlink("/"), EISDIR, "unlink /: EISDIR");
	check_errno(rename("/", "/tmp/x"), EBUSY, "rename /: EBUSY");
	check_errno(rename("/tmp", "/tmp/x"), EINVAL, "rename a directory under itself: EINVAL");
	check_errno(rmdir("/tmp/."), EINVAL, "rmdir dir/.: EINVAL");
	check_errno(rmdir("/tmp/.."), ENOTEMPTY, "rmdir dir/..: ENOTEMPTY");
	check_errno(link("/tmp/none", "/tmp/x"), ENOENT, "link a missing file: ENOENT");
	check_errno(symlink("a", "/tmp"), EEXIST, "symlink onto a directory: EEXIST");
	check_errno(mkdir("/tmp/../tmp", 0755), EEXIST, "mkdir through ..: EEXIST");
	check_errno(rename("/tmp/none", "/tmp/none"), ENOENT, "rename a missing name onto itself: ENOENT");
	check_errno(unlink("/tmp/none/"), ENOENT, "unlink missing/: ENOENT");
	check_errno(access("/tmp/../tmp/./../etc/passwd/", F_OK), ENOTDIR, "file/ in a path: ENOTDIR");
	check_ok(mkdir("/tmp/fs_edges.1", 0755), "mkdir");
	check_errno(rename("/tmp/fs_edges.1/.", "/tmp/fs_edges.2"), EBUSY, "rename dir/.: EBUSY");
	check_ok(rename("/tmp/fs_edges.1", "/tmp/fs_edges.1/"), "rename a directory onto itself with a slash");
	check_ok(rename("/tmp/fs_edges.1/", "/tmp/fs_edges.3/"), "rename directories given with slashes");
	check_ok(rmdir("/tmp/fs_edges.3"), "rmdir the renamed directory");
	fd = open("/tmp/fs_edges.f", O_CREAT | O_WRONLY, 0644);
	check_ok(fd, "create a file");
	close(fd);
	check_errno(rename("/tmp/fs_edges.f", "/tmp/fs_edges.g/"), ENOTDIR, "rename file to name/: ENOTDIR");
	check_errno(rename("/tmp/fs_edges.f/", "/tmp/fs_edges.g"), ENOTDIR, "rename file/: ENOTDIR");
	check_errno(link("/tmp/fs_edges.f", "/tmp/fs_edges.h/"), ENOENT, "link to name/: ENOENT");
	check_errno(mkdir("/tmp/fs_edges.f/", 0755), EEXIST, "mkdir file/: EEXIST");
	check_errno(symlink("x", "/tmp/fs_edges.s/"), ENOENT, "symlink to name/: ENOENT");
	check_ok(unlink("/tmp/fs_edges.f"), "unlink the file");
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);
	return tap_done();
}
