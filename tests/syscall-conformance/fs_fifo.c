/*
 * fs_fifo: named pipes made with mkfifo under /tmp (removed again).
 *
 * fifo(7)'s open rules: O_RDONLY|O_NONBLOCK opens at once, O_WRONLY|O_NONBLOCK
 * without a reader is ENXIO and with one succeeds, O_RDWR never waits, a
 * blocking O_RDONLY waits for a writer (a forked child opens it later) and a
 * blocking O_WRONLY for a reader.  Data written through one name is read
 * through another (a hard link of the FIFO); fstat reports S_IFIFO and the
 * FIFO's own inode; lseek is ESPIPE; EOF once the last writer closes.
 */
#include "tap.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define F "/tmp/fs_fifo.p"
#define L "/tmp/fs_fifo.link"

int main(void)
{
	struct stat tmp_st, s, ls;
	struct timespec ts[2];
	char buf[64];
	int r, w, rw, status;
	pid_t pid;

	tap_plan(20);
	stat("/tmp", &tmp_st);
	check_ok(mkfifo(F, 0644), "mkfifo");
	check_errno(mkfifo(F, 0644), EEXIST, "mkfifo again: EEXIST");
	check_errno(open(F, O_WRONLY | O_NONBLOCK), ENXIO, "O_WRONLY|O_NONBLOCK with no reader: ENXIO");
	r = open(F, O_RDONLY | O_NONBLOCK);
	check_ok(r, "O_RDONLY|O_NONBLOCK opens at once");
	check_eq(read(r, buf, sizeof buf), 0, "read with no writer ever: 0 (EOF)");
	w = open(F, O_WRONLY | O_NONBLOCK);
	check_ok(w, "O_WRONLY|O_NONBLOCK with a reader");
	check_eq(write(w, "abc", 3), 3, "write");
	check_eq(read(r, buf, sizeof buf), 3, "read what was written");
	check_errno(read(r, buf, sizeof buf), EAGAIN, "empty, writer open, O_NONBLOCK: EAGAIN");
	check_errno(lseek(r, 0, SEEK_SET), ESPIPE, "lseek: ESPIPE");
	fstat(r, &s);
	stat(F, &ls);
	check(S_ISFIFO(s.st_mode) && s.st_ino == ls.st_ino, "fstat: S_IFIFO, the FIFO's inode");
	close(w);
	check_eq(read(r, buf, sizeof buf), 0, "EOF after the last writer closed");
	close(r);
	rw = open(F, O_RDWR);
	check_ok(rw, "O_RDWR never waits");
	close(rw);

	check_ok(link(F, L), "hard link to the FIFO");
	pid = fork();
	if (pid == 0) {
		usleep(100000);
		w = open(L, O_WRONLY);
		write(w, "from child", 10);
		close(w);
		_exit(0);
	}
	r = open(F, O_RDONLY);
	check_ok(r, "blocking O_RDONLY returns once a writer opens (through the other name)");
	check_eq(read(r, buf, sizeof buf), 10, "read the child's data");
	check_mem(buf, "from child", 10, "data intact");
	waitpid(pid, &status, 0);
	close(r);

	pid = fork();
	if (pid == 0) {
		usleep(100000);
		r = open(F, O_RDONLY);
		_exit(read(r, buf, sizeof buf) == 2 ? 0 : 1);
	}
	w = open(F, O_WRONLY);
	check_ok(w, "blocking O_WRONLY returns once a reader opens");
	check_eq(write(w, "hi", 2), 2, "write to the reader");
	close(w);
	waitpid(pid, &status, 0);
	check(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the reader got the data");

	unlink(F);
	unlink(L);
	ts[0] = tmp_st.st_atim;
	ts[1] = tmp_st.st_mtim;
	utimensat(AT_FDCWD, "/tmp", ts, 0);
	return tap_done();
}
