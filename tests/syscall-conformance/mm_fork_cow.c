/*
 * mm_fork_cow - private memory after fork: each side sees only its own writes.
 *
 * The sandbox shares private pages copy-on-write after fork (a write fault,
 * or the kernel itself writing into the page, copies it), so every way a
 * page can be written is checked on both sides: plain stores by the parent
 * and by the child (a big anonymous mapping, the heap, the stack, .data),
 * the kernel writing with read(2) into a shared page, MADV_DONTNEED of a
 * shared page, mprotect of a shared page back to writable, a second fork
 * (three sharers), a file-backed MAP_PRIVATE page, and a futex word in a
 * page shared since the fork (wait in the child, wake from the parent's
 * write through a pipe handshake: keys must stay with the address space).
 */
#include "mm.h"
#include <linux/futex.h>
#include <stdint.h>

#define BIG (256 * PG)           /* more than the sandbox copies eagerly at fork */

static char data_page[PG] __attribute__((aligned(4096))) = {1};

static int child_status(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(void)
{
	tap_plan(16);
	char *big = sys_mmap(NULL, BIG, RW, ANON_PRIV, -1, 0);
	check(big != MAP_FAILED, "mmap %ld KiB private anonymous", BIG / 1024);
	for (long i = 0; i < BIG; i += PG)
		memset(big + i, 'p', PG);
	char *heap = malloc(1 << 20);
	memset(heap, 'h', 1 << 20);
	volatile char stack[2 * PG];
	memset((char *)stack, 's', sizeof stack);
	memset(data_page, 'd', PG);

	/* 1. the child writes everywhere; the parent still sees its own bytes */
	pid_t pid = fork();
	if (pid == 0) {
		memset(big, 'c', BIG);
		memset(heap, 'c', 1 << 20);
		memset((char *)stack, 'c', sizeof stack);
		memset(data_page, 'c', PG);
		_exit(all_bytes(big, BIG, 'c') && all_bytes(heap, 1 << 20, 'c') ? 0 : 1);
	}
	check_eq(child_status(pid), 0, "the child sees its own writes");
	check(all_bytes(big, BIG, 'p'), "the parent's big mapping is unchanged by the child's writes");
	check(all_bytes(heap, 1 << 20, 'h') && all_bytes((char *)stack, sizeof stack, 's')
	      && all_bytes(data_page, PG, 'd'), "heap, stack and .data unchanged too");

	/* 2. the parent writes after fork; the child (waiting on a pipe) still sees the old bytes */
	int go[2], done[2];
	check_ok(pipe(go) | pipe(done), "pipes");
	pid = fork();
	if (pid == 0) {
		char c;
		if (read(go[0], &c, 1) != 1)
			_exit(3);
		_exit(all_bytes(big, BIG, 'p') && all_bytes(heap, 1 << 20, 'h') ? 0 : 1);
	}
	memset(big, 'P', BIG);
	memset(heap, 'H', 1 << 20);
	check_eq(write(go[1], "x", 1), 1, "parent wrote, tells the child");
	check_eq(child_status(pid), 0, "the child sees the bytes from before its fork");

	/* 3. the kernel writes into a shared page (read(2) into it) on one side only */
	pid = fork();
	if (pid == 0) {
		if (read(go[0], big + 5 * PG + 100, 1) != 1)
			_exit(3);
		_exit(big[5 * PG + 100] == 'k' && big[5 * PG + 99] == 'P' ? 0 : 1);
	}
	check_eq(write(go[1], "k", 1), 1, "a byte for the child's read(2)");
	check_eq(child_status(pid), 0, "read(2) into a shared page lands in the child's copy");
	check(big[5 * PG + 100] == 'P', "and not in the parent's page");

	/* 4. MADV_DONTNEED in the child zeroes its view only; mprotect back to RW then write */
	pid = fork();
	if (pid == 0) {
		if (sys_madvise(big, 2 * PG, MADV_DONTNEED) || !all_bytes(big, 2 * PG, 0))
			_exit(1);
		if (sys_mprotect(big + 8 * PG, PG, PROT_READ) || sys_mprotect(big + 8 * PG, PG, RW))
			_exit(2);
		big[8 * PG] = 'm';
		_exit(big[8 * PG + 1] == 'P' ? 0 : 4);
	}
	check_eq(child_status(pid), 0, "MADV_DONTNEED and mprotect in the child");
	check(all_bytes(big, 9 * PG, 'P'), "the parent's pages keep their bytes");

	/* 5. three sharers: a grandchild */
	pid = fork();
	if (pid == 0) {
		pid_t g = fork();
		if (g == 0) {
			big[0] = 'g';
			_exit(big[1] == 'P' ? 0 : 1);
		}
		int s = child_status(g);
		_exit(s == 0 && big[0] == 'P' ? 0 : 1);
	}
	check_eq(child_status(pid), 0, "child and grandchild each see their own writes");

	/* 6. a file-backed private mapping */
	int fd = scratch_file("mm_fork_cow", 4 * PG);
	char *fm = sys_mmap(NULL, 4 * PG, RW, MAP_PRIVATE, fd, 0);
	fm[0] = 'F';
	pid = fork();
	if (pid == 0) {
		fm[PG] = 'C';
		_exit(fm[0] == 'F' && fm[PG] == 'C' ? 0 : 1);
	}
	check_eq(child_status(pid), 0, "file MAP_PRIVATE: the child's write");
	check(fm[0] == 'F' && fm[PG] == 'b', "file MAP_PRIVATE: the parent's page is its own");
	close(fd);
	scratch_remove("mm_fork_cow");

	/* 7. a futex in a page shared since fork: the child waits, the parent's write does not wake it,
	 *    the child's own thread-less wait ends on its own timeout; keys stay per process */
	uint32_t *word = (uint32_t *)(big + 20 * PG);
	*word = 0;
	pid = fork();
	if (pid == 0) {
		struct timespec ts = {0, 50 * 1000 * 1000};
		long r = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
		_exit(r == -1 && errno == ETIMEDOUT ? 0 : 1);
	}
	*word = 1;
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	check_eq(child_status(pid), 0, "a private futex wake in the parent does not wake the child");
	return tap_done();
}
