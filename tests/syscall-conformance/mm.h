/*
 * mm.h - helpers shared by the mm_*.c memory conformance programs.
 *
 * Raw syscall wrappers (so libc cannot emulate or hide an errno), a scratch
 * file under /tmp that is removed again (and /tmp's times restored, so the
 * native run leaves the rootfs exactly as it found it), and a fork helper
 * that runs a child function and returns its exit status.
 */
#ifndef CONFORMANCE_MM_H
#define CONFORMANCE_MM_H

#include "tap.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PG 4096L
#define RW (PROT_READ | PROT_WRITE)
#define ANON_PRIV (MAP_ANONYMOUS | MAP_PRIVATE)
#define ANON_SHARED (MAP_ANONYMOUS | MAP_SHARED)

__attribute__((unused)) static char *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long off)
{
	return (char *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}
__attribute__((unused)) static long sys_munmap(void *addr, size_t len) { return syscall(SYS_munmap, addr, len); }
__attribute__((unused)) static long sys_mprotect(void *addr, size_t len, int prot)
{
	return syscall(SYS_mprotect, addr, len, prot);
}
__attribute__((unused)) static long sys_madvise(void *addr, size_t len, int advice)
{
	return syscall(SYS_madvise, addr, len, advice);
}
__attribute__((unused)) static long sys_msync(void *addr, size_t len, int flags)
{
	return syscall(SYS_msync, addr, len, flags);
}
__attribute__((unused)) static long sys_mincore(void *addr, size_t len, unsigned char *vec)
{
	return syscall(SYS_mincore, addr, len, vec);
}
__attribute__((unused)) static char *sys_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	return (char *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
}

/* Is [p, p+len) all `byte`? */
__attribute__((unused)) static int all_bytes(const char *p, size_t len, int byte)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (char)byte)
			return 0;
	return 1;
}

/* Is the page at p mapped?  Asked without touching it. */
__attribute__((unused)) static int mapped(void *p) { return sys_madvise(p, PG, MADV_NORMAL) == 0; }

/* A free, page-aligned range of `pages` pages (mapped, then unmapped again). */
__attribute__((unused)) static char *free_range(long pages)
{
	char *p = sys_mmap(NULL, pages * PG, PROT_NONE, ANON_PRIV, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	sys_munmap(p, pages * PG);
	return p;
}

/* Scratch files live in /tmp; remember /tmp's times to put them back. */
static struct stat mm_tmp_st;
static int mm_tmp_saved;

/* Create /tmp/NAME (truncated, mode 0644) holding `len` bytes: page k is all 'a'+k; return an O_RDWR fd. */
__attribute__((unused)) static int scratch_file(const char *name, size_t len)
{
	char path[256];
	int fd;

	if (!mm_tmp_saved && stat("/tmp", &mm_tmp_st) == 0)
		mm_tmp_saved = 1;
	snprintf(path, sizeof(path), "/tmp/%s", name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	for (size_t off = 0; off < len; off += PG) {
		char page[PG];
		size_t n = len - off < (size_t)PG ? len - off : (size_t)PG;
		memset(page, 'a' + (int)((off / PG) % 26), sizeof(page));  /* page k is all 'a'+k */
		if (pwrite(fd, page, n, (off_t)off) != (ssize_t)n)
			return -1;
	}
	return fd;
}

/* Remove /tmp/NAME and restore /tmp's times. */
__attribute__((unused)) static void scratch_remove(const char *name)
{
	char path[256];
	struct timespec ts[2];

	snprintf(path, sizeof(path), "/tmp/%s", name);
	unlink(path);
	if (mm_tmp_saved) {
		ts[0] = mm_tmp_st.st_atim;
		ts[1] = mm_tmp_st.st_mtim;
		utimensat(AT_FDCWD, "/tmp", ts, 0);
	}
}

/* Fork; the child runs fn(arg) and exits with its result.  Returns the child's exit status (or -1). */
__attribute__((unused)) static int in_child(int (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = fork();

	if (pid == 0)
		_exit(fn(arg));
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

#endif
